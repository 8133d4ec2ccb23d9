"""Tiny random models for tests: a two-layer Llama and a byte-level tokenizer.

The tokenizer maps every UTF-8 byte to one token (256 ids) plus ChatML specials, so it needs no
training and no files, and tokenizes in microseconds. It carries a ChatML chat template, so chat
formatting code paths are the same as for SmolLM2.
"""

from __future__ import annotations

import functools

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@functools.cache
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    byte_to_unicode = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_to_unicode))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return tok.to_str()


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (vocab 259) with ChatML specials; EOS = ``<|im_end|>``, pad = ``<|endoftext|>``."""
    from tokenizers import Tokenizer

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    tok.chat_template = CHATML
    return tok


def tiny_config(vocab_size: int = 259, hidden: int = 64, layers: int = 2) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        # SPECIALS are appended after the 256 byte tokens: 256 <|endoftext|>, 257 <|im_start|>, 258 <|im_end|>
        eos_token_id=258,
        pad_token_id=256,
        bos_token_id=None,
    )


def tiny_model(seed: int = 0, **kwargs: int) -> LlamaForCausalLM:
    """A randomly initialized two-layer Llama; the same seed gives the same weights."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(tiny_config(**kwargs))
    finally:
        torch.random.set_rng_state(gen_state)
    model.config._name_or_path = f"tiny:{seed}"
    return model
