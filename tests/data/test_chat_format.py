"""Chat formatting and loss masking: prompt tokens carry no loss, the response ends with EOS."""

from __future__ import annotations

from rlhfkit.data.chat import IGNORE, encode_pair, render_prompt
from rlhfkit.data.collate import collate_lm, epoch_order
from rlhfkit.models.tiny import byte_tokenizer


def test_prompt_is_rendered_with_the_tokenizers_chat_template() -> None:
    tok = byte_tokenizer()
    text = render_prompt(tok, [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(tok, "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_prompt_tokens_carry_no_loss_and_response_ends_with_eos() -> None:
    tok = byte_tokenizer()
    enc = encode_pair(tok, "Hi", "Yo", max_length=100)
    prompt_len = len(tok(render_prompt(tok, "Hi"), add_special_tokens=False)["input_ids"])
    assert enc.labels[:prompt_len] == [IGNORE] * prompt_len
    # "Yo" is two bytes, then EOS: exactly three labelled tokens.
    assert enc.labels[prompt_len:] == enc.input_ids[prompt_len:] and len(enc.labels) - prompt_len == 3
    assert enc.input_ids[-1] == tok.eos_token_id
    assert tok.decode(enc.input_ids[prompt_len:-1]) == "Yo"


def test_long_prompts_are_cut_from_the_left() -> None:
    tok = byte_tokenizer()
    enc = encode_pair(tok, "x" * 200 + "END", "ok", max_length=64, max_prompt_length=32)
    assert enc.prompt_truncated and len(enc.prompt_ids) == 32
    assert tok.decode(enc.prompt_ids).endswith("END<|im_end|>\n<|im_start|>assistant\n")
    assert len(enc.input_ids) <= 64


def test_padding_carries_no_loss() -> None:
    batch = collate_lm([[1, 2, 3], [4]], [[IGNORE, 2, 3], [4]], pad_id=0)
    assert batch["labels"].tolist() == [[IGNORE, 2, 3], [4, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_epoch_order_is_a_seeded_permutation_grouped_by_length() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8, 4]
    a = epoch_order(lengths, 2, seed=1, epoch=0, group_by_length=True)
    assert sorted(a) == list(range(8)) and a == epoch_order(lengths, 2, seed=1, epoch=0, group_by_length=True)
    assert a != epoch_order(lengths, 2, seed=1, epoch=1, group_by_length=False)
    assert [lengths[i] for i in a] == sorted(lengths, reverse=True)  # one mega-batch: fully sorted
