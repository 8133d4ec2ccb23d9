"""A reward model directory that plain ``transformers`` reads as a sequence classifier.

``AutoModelForSequenceClassification.from_pretrained(dir)`` (and so TRL, OpenRLHF, vLLM's reward task
and RewardBench) builds the trunk plus a linear ``score`` head with one output, and reads the logit at
the rightmost token that is not ``config.pad_token_id`` (transformers 5.x,
``GenericForSequenceClassification.forward``). For that to give rlhfkit's reward, `save_reward_model`
adds three things to the trunk's directory:

- ``score.weight`` (1, H) in the weights: the heads' weights with the normalization folded in and averaged
  over the K ensemble members, so its output is the ensemble's mean normalized reward (a mean of affine
  maps of one feature vector is one affine map). The K separate heads stay in ``reward_head.safetensors``.
- ``pad_token_id`` distinct from EOS (in ``config.json`` and the tokenizer): rlhfkit reads the EOS that
  ends every row, and a pad equal to EOS would make transformers read the token before it.
- ``num_labels`` 1 and ``rlhfkit_score_offset``: Llama-family ``score`` layers have no bias
  (``nn.Linear(..., bias=False)``), so the constant part of the reward (head bias times gain plus the
  normalization's offset) cannot be folded in. It is 0 for a pairwise-trained model without a fitted
  normalization (the Bradley-Terry loss never moves a bias); otherwise transformers' logit plus this
  offset is rlhfkit's reward. OpenRLHF reads the same offset from ``mean`` with ``normalize_reward``.

The input transformers must see is rlhfkit's: the chat-templated prompt, the response, then EOS
(`rlhfkit.data.chat.encode_pair`). Mean pooling (``pooling="mean"``) has no transformers equivalent,
so such a model gets no ``score`` head and says so in ``config.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from rlhfkit.files import write_atomic, write_text_atomic

log = logging.getLogger(__name__)

SCORE_KEY = "score.weight"
SCORE_SHARD = "model-score.safetensors"
"""Where ``score.weight`` goes when the trunk's weights are sharded (listed in the index)."""


def folded_mean_head(weight: Tensor, bias: Tensor, gain: Tensor, offset: Tensor) -> tuple[Tensor, float]:
    """(K, H) weights, (K,) bias, (K,) gain and offset -> the (1, H) weight and the constant whose sum
    with ``w . h`` is the mean over heads of ``gain_k (w_k . h + b_k) + offset_k``."""
    weight, bias = weight.detach(), bias.detach()
    w = (weight.double() * gain.double()[:, None]).mean(dim=0, keepdim=True)
    c = (bias.double() * gain.double() + offset.double()).mean()
    return w.float(), float(c)


def distinct_pad_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """A pad id that is not EOS: the tokenizer's own pad when it differs, else another special
    token it already has (no new token: that would resize the embeddings). None when it has none."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad is not None and pad != eos:
        return int(pad)
    unk = tokenizer.unk_token_id
    for name in ("<|endoftext|>", "<pad>", "[PAD]", "<|finetune_right_pad_id|>", "<unk>"):
        token_id = tokenizer.convert_tokens_to_ids(name)  # unknown names map to unk (or None)
        known = token_id != unk or name == tokenizer.unk_token
        if isinstance(token_id, int) and token_id >= 0 and token_id != eos and known:
            return token_id
    others = [int(i) for i in tokenizer.all_special_ids if i != eos]
    return others[0] if others else None


def tokenizer_for_saving(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The tokenizer to save beside a reward model: a copy whose pad token is not EOS (when it can be)."""
    pad = distinct_pad_id(tokenizer)
    if pad is None or pad == tokenizer.pad_token_id:
        return tokenizer
    import copy

    saved = copy.deepcopy(tokenizer)
    saved.pad_token = saved.convert_ids_to_tokens(pad)
    return saved


def _add_score_weight(out: Path, weight: Tensor) -> None:
    """Put ``score.weight`` beside the trunk's weights (single file, or one more shard in the index)."""
    index = out / "model.safetensors.index.json"
    tensor = weight.detach().float().cpu().contiguous()
    if index.is_file():
        data = json.loads(index.read_text())
        write_atomic(out / SCORE_SHARD, lambda p: save_file({SCORE_KEY: tensor}, str(p), metadata={"format": "pt"}))
        data.setdefault("weight_map", {})[SCORE_KEY] = SCORE_SHARD
        write_text_atomic(index, json.dumps(data, indent=2) + "\n")
        return
    weights = out / "model.safetensors"
    tensors = load_file(str(weights))
    tensors[SCORE_KEY] = tensor.to(next(iter(tensors.values())).dtype)
    write_atomic(weights, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))


def write_sequence_classifier(
    out: Path, weight: Tensor, bias: Tensor, gain: Tensor, offset: Tensor, pooling: str, pad_id: int | None
) -> float | None:
    """Make the model directory `out` load as a one-label sequence classifier scoring rlhfkit's reward.
    Returns the constant transformers' logit lacks (None when the pooling cannot be expressed)."""
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    if pooling != "last":
        config["rlhfkit_score_head"] = f"none: pooling '{pooling}' has no transformers equivalent"
        write_text_atomic(config_path, json.dumps(config, indent=2) + "\n")
        log.warning("reward model with %s pooling: no transformers 'score' head written", pooling)
        return None
    w, c = folded_mean_head(weight, bias, gain, offset)
    _add_score_weight(out, w)
    config.update(
        id2label={"0": "reward"},
        label2id={"reward": 0},
        rlhfkit_score_offset=c,
        normalize_reward=c != 0.0,  # OpenRLHF: reward = (logit - mean) / std
        mean=-c,
        std=1.0,
    )
    if pad_id is not None:
        config["pad_token_id"] = pad_id
    else:
        log.warning("tokenizer has no token besides EOS to pad with: transformers will read the token before EOS")
    write_text_atomic(config_path, json.dumps(config, indent=2) + "\n")
    return c
