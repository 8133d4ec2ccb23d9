"""Chat formatting and loss masking: prompt tokens carry no loss, the response ends with EOS."""

from __future__ import annotations

import torch

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
    # One mega-batch: sorted into the batches (9, 8) (7, 5) (4, 3) (2, 1), then those are shuffled.
    batches = [sorted(lengths[i] for i in a[k : k + 2]) for k in range(0, 8, 2)]
    assert sorted(batches) == [[1, 2], [3, 4], [5, 7], [8, 9]]
    orders = {tuple(epoch_order(lengths, 2, seed=s, epoch=0, group_by_length=True)) for s in range(8)}
    assert len(orders) > 1  # the seed still matters when everything fits in one mega-batch
    assert all(sorted(lengths[i] for i in o[:2]) == [8, 9] for o in orders)  # the longest batch first


def test_epoch_order_keeps_batches_aligned_with_a_short_last_batch() -> None:
    lengths = [(7 * i) % 139 for i in range(139)]  # 139 rows, batch 4: mega-batches of 128 and 11
    order = epoch_order(lengths, 4, seed=3, epoch=0, group_by_length=True)
    assert sorted(order) == list(range(139))
    # Naive reference: the same permutation, cut into mega-batches, each sorted and cut into batches.
    perm = torch.randperm(139, generator=torch.Generator().manual_seed(3 * 100_003)).tolist()
    expected = []
    for start in (0, 128):
        ranked = sorted(perm[start : start + 128], key=lambda i: -lengths[i])
        expected += [frozenset(ranked[k : k + 4]) for k in range(0, len(ranked), 4)]
    got = [frozenset(order[k : k + 4]) for k in range(0, 139, 4)]
    assert sorted(map(sorted, got)) == sorted(map(sorted, expected))
    assert got[-1] == expected[-1] and len(got[-1]) == 3  # the short batch stays last
