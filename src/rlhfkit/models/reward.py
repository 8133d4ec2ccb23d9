"""Reward models: a language-model trunk with K scalar heads reading the last real token.

A reward model maps (prompt, response) to a number. The trunk is any causal LM (the bundled model, a
directory, an SFT run); its LM head is not used. The head is a linear map from the final hidden state
of the last non-padding token (the EOS that `encode_pair` appends) to K raw rewards, one per ensemble
member (Ouyang et al. 2022, sec. 3.5; Stiennon et al. 2020, sec. 3.4). ``pooling="mean"`` reads the
mean of the final hidden states over all real tokens instead (see `POOLINGS`).

Saved directory (a normal model directory plus two files)::

    config.json, model.safetensors, tokenizer*   the trunk as a causal LM (LoRA merged into it), plus
                              a transformers ``score`` head: it loads as a sequence classifier (`reward_hf`)
    reward_head.safetensors   "weight" (K, H) and "bias" (K,): raw_k = weight[k] . h + bias[k]
    reward.json               {"n_heads", "hidden_size", "loss", "base_model", "max_length",
                               "normalization": {"gain": [K], "bias": [K], "reference", "samples"}}

`score` returns normalized rewards ``gain[k] * raw_k + bias[k]`` (Ziegler et al. 2019, sec. 2.2:
the reference policy's samples score mean 0, std 1 on every head). A PPO value head initialised from
the reward model can take `folded_head()`, the normalization folded into the linear weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhfkit.data.chat import ChatTemplate, encode_pair
from rlhfkit.data.collate import pad_right
from rlhfkit.data.records import PromptText
from rlhfkit.files import write_atomic, write_text_atomic
from rlhfkit.models.lm import hidden_states, through_root
from rlhfkit.models.loading import ModelLoadError, load_model
from rlhfkit.models.reward_hf import tokenizer_for_saving, write_sequence_classifier
from rlhfkit.models.saving import save_model_dir

HEAD_FILE = "reward_head.safetensors"
META_FILE = "reward.json"


class RewardScores(NamedTuple):
    """Normalized rewards of B (prompt, response) rows scored by K heads."""

    mean: Tensor
    """(B,) mean over the heads: the reward."""
    std: Tensor | None
    """(B,) sample standard deviation over the heads (ensemble disagreement); None when K = 1."""
    per_head: Tensor
    """(B, K) every head's normalized reward."""


def scores_from_heads(per_head: Tensor) -> RewardScores:
    """(B, K) normalized head outputs -> mean, std over heads (None for one head), per head."""
    std = per_head.std(dim=1, unbiased=True) if per_head.shape[1] > 1 else None
    return RewardScores(per_head.mean(dim=1), std, per_head)


@dataclass(frozen=True)
class Normalization:
    """Affine map applied to raw head outputs: ``gain * raw + bias`` per head."""

    gain: tuple[float, ...]
    """(K,) multipliers; 1/std of the reference samples' raw rewards."""
    bias: tuple[float, ...]
    """(K,) offsets; -mean/std of the reference samples' raw rewards."""
    reference: str = ""
    """The policy whose samples set the normalization ('' when none was fitted: the identity)."""
    samples: int = 0
    """How many reference samples it was fitted on."""


@dataclass(frozen=True)
class RewardMeta:
    """What ``reward.json`` holds besides the weights."""

    n_heads: int
    """K: heads of the ensemble (1 = a single reward model)."""
    hidden_size: int
    """H: width of the trunk's final hidden state, the head's input."""
    loss: str
    """Training loss(es) by name, e.g. 'bradley_terry' or 'bradley_terry+plackett_luce'."""
    base_model: str
    """The MODEL the trunk started from."""
    max_length: int
    """Longest prompt + response in tokens (prompts cut from the left, as in training)."""
    normalization: Normalization = field(default_factory=lambda: Normalization((), ()))
    """Gain and bias per head (empty tuples: identity)."""
    pooling: str = "last"
    """How the trunk's (B, T, H) states become the heads' (B, H) input: a name in `POOLINGS`."""
    chat_template: ChatTemplate = "always"
    """Which prompts went through the chat template in training, so scoring does the same (see
    `rlhfkit.data.chat.TEMPLATE_RULES`; directories written before the choice existed read 'always')."""

    def to_json(self) -> dict:
        return {"format_version": 1, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> RewardMeta:
        norm = data.get("normalization") or {}
        return cls(
            n_heads=int(data["n_heads"]),
            hidden_size=int(data["hidden_size"]),
            loss=str(data.get("loss", "")),
            base_model=str(data.get("base_model", "")),
            max_length=int(data.get("max_length", 512)),
            normalization=Normalization(
                tuple(float(g) for g in norm.get("gain", ())),
                tuple(float(b) for b in norm.get("bias", ())),
                str(norm.get("reference", "")),
                int(norm.get("samples", 0)),
            ),
            pooling=str(data.get("pooling", "last")),  # directories written before pooling existed read 'last'
            chat_template=data.get("chat_template", "always"),
        )


def normalization_from_raw(raw: Tensor, reference: str) -> Normalization:
    """Gain and bias that give the rows of `raw` (M, K) mean 0 and sample std 1 on every head.

    Ziegler et al. 2019, sec. 2.2: the reward model is normalized to mean 0, variance 1 over the
    reference policy's samples, so a KL coefficient means the same for every reward model. A head
    whose samples all score the same keeps gain 1 (there is no spread to scale).
    """
    if raw.dim() != 2 or raw.shape[0] < 2:
        raise ValueError(f"need (M >= 2, K) raw scores to normalize, got shape {tuple(raw.shape)}")
    raw = raw.double()
    mean, std = raw.mean(dim=0), raw.std(dim=0, unbiased=True)
    gain = torch.where(std > 1e-8, 1.0 / std.clamp_min(1e-8), torch.ones_like(std))
    return Normalization(tuple(gain.tolist()), tuple((-mean * gain).tolist()), reference, int(raw.shape[0]))


class RewardHead(nn.Module):
    """K linear heads ``(B, H) -> (B, K)``. Parameter names (as saved): ``weight`` (K, H), ``bias`` (K,).

    Weights start from N(0, 1/(H+1)) (std 1/sqrt(H+1), Stiennon et al. 2020's reward head init), so
    the initial rewards have unit scale whatever the trunk width; biases start at 0.
    """

    def __init__(self, hidden_size: int, n_heads: int = 1, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_heads, hidden_size, generator=generator) / math.sqrt(hidden_size + 1))
        self.bias = nn.Parameter(torch.zeros(n_heads))

    def forward(self, features: Tensor) -> Tensor:
        return nn.functional.linear(features, self.weight.to(features.dtype), self.bias.to(features.dtype))


def last_token(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """(B, T, H) states -> (B, H) at each row's last position with mask 1 (any padding side)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    last = (attention_mask.long() * (positions + 1)).argmax(dim=1)  # +1: an all-zero row picks 0
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mean_tokens(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """(B, T, H) states -> (B, H) mean over each row's positions with mask 1 (any padding side)."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


Pooling = Literal["last", "mean"]
"""The keys of `POOLINGS`, as a type for config fields."""

POOLINGS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"last": last_token, "mean": mean_tokens}
"""Pooling name -> ``fn(hidden (B, T, H), attention_mask (B, T)) -> (B, H)``.

'last' is the standard reward model (the state of the final token, which has attended to everything).
'mean' averages every real token's state. With a frozen trunk the heads are linear probes of these
features, and for what a text *says* (its sentiment, say) the average is the better probe (on the
demo's candidates, bench/results/demo.md). A trunk that trains can learn to gather into the last token
itself."""


class RewardModel(nn.Module):
    """Trunk + K-head reward model. `forward` gives raw heads; `score` gives normalized rewards."""

    norm_gain: Tensor
    """(K,) buffer (registered in `__init__`): normalized reward = raw * norm_gain + norm_bias."""
    norm_bias: Tensor
    """(K,) buffer, see `norm_gain`."""

    def __init__(
        self,
        backbone: PreTrainedModel | nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        head: RewardHead,
        meta: RewardMeta,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.tokenizer = tokenizer
        self.meta = meta
        self.register_buffer("norm_gain", torch.ones(meta.n_heads), persistent=False)
        self.register_buffer("norm_bias", torch.zeros(meta.n_heads), persistent=False)
        self.set_normalization(meta.normalization)

    @property
    def n_heads(self) -> int:
        return self.meta.n_heads

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def set_normalization(self, norm: Normalization) -> None:
        """Use `norm` from now on (empty gain/bias = identity); it is saved with the model."""
        k = self.meta.n_heads
        gain = norm.gain or (1.0,) * k
        bias = norm.bias or (0.0,) * k
        if len(gain) != k or len(bias) != k:
            raise ValueError(f"normalization needs {k} gains and biases, got {len(gain)} and {len(bias)}")
        self.meta = replace(self.meta, normalization=replace(norm, gain=tuple(gain), bias=tuple(bias)))
        self.norm_gain.copy_(torch.tensor(gain))
        self.norm_bias.copy_(torch.tensor(bias))

    def trunk_hidden(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor | None = None) -> Tensor:
        """(R, T) -> (R, T, H) final hidden states of the trunk (no LM head)."""
        return hidden_states(self.backbone, input_ids, attention_mask, position_ids=position_ids)

    def features(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        *,
        position_ids: Tensor | None = None,
        row: Tensor | None = None,
        seq_mask: Tensor | None = None,
    ) -> Tensor:
        """The head's input (`meta.pooling` of the trunk's states), (B, H). With a frozen trunk these can
        be computed once and cached.

        Plain right-padded rows: ``(B, T)`` ids and mask, one sequence per row. Packed rows (several
        sequences per row, see `rlhfkit.train.reward.data.pack_rows`): a (R, 1, T, T) mask, the rows'
        `position_ids`, and for each of the B sequences its `row` (B,) and the columns it owns, `seq_mask` (B, T).
        """
        hidden = self.trunk_hidden(input_ids, attention_mask, position_ids)
        if row is None:
            return POOLINGS[self.meta.pooling](hidden, attention_mask)
        if seq_mask is None:
            raise ValueError("packed rows need seq_mask (the columns each sequence owns) along with row")
        return POOLINGS[self.meta.pooling](hidden[row], seq_mask)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        *,
        position_ids: Tensor | None = None,
        row: Tensor | None = None,
        seq_mask: Tensor | None = None,
    ) -> Tensor:
        """(B, K) raw head outputs on the pooled features of the B sequences (layouts as in `features`)."""
        return self.head(
            self.features(input_ids, attention_mask, position_ids=position_ids, row=row, seq_mask=seq_mask)
        )

    def normalize(self, raw: Tensor) -> Tensor:
        """(B, K) raw -> (B, K) normalized rewards."""
        return raw.float() * self.norm_gain + self.norm_bias

    def folded_head(self) -> tuple[Tensor, Tensor]:
        """(K, H) weight and (K,) bias whose output is the normalized reward: for a value-head init."""
        w = self.head.weight.detach().float() * self.norm_gain[:, None]
        b = self.head.bias.detach().float() * self.norm_gain + self.norm_bias
        return w, b

    def encode(self, prompts: list[PromptText], responses: list[str]) -> list[list[int]]:
        """Token ids of each (prompt, response + EOS) with the model's own chat template and length limit."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [
            encode_pair(
                self.tokenizer, p, r, max_length=self.meta.max_length, chat_template=self.meta.chat_template
            ).input_ids
            for p, r in zip(prompts, responses, strict=True)
        ]

    @torch.no_grad()
    def batched_features(self, ids: list[list[int]], batch_size: int = 16, progress: bool = False) -> Tensor:
        """(N, H) features of tokenized rows, batched by length (less padding), in input order; with
        `progress`, a bar on stderr counts the sequences (tqdm: it comes with transformers)."""
        from tqdm.auto import tqdm

        out = torch.zeros(len(ids), self.meta.hidden_size)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        pad = self.tokenizer.pad_token_id
        with tqdm(total=len(ids), desc="scoring", unit="seq", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                rows = [ids[i] for i in chunk]
                mask = pad_right([[1] * len(r) for r in rows], 0).to(self.device)
                out[chunk] = self.features(pad_right(rows, pad).to(self.device), mask).float().cpu()
                bar.update(len(chunk))
        return out

    @torch.no_grad()
    @through_root  # sharded (FSDP on CPU), the head is the root's: its weights are gathered only in a forward
    def raw_scores(self, ids: list[list[int]], batch_size: int = 16, progress: bool = False) -> Tensor:
        """(N, K) raw head outputs of tokenized rows, in input order."""
        was_training = self.training
        self.eval()
        raw = self.head(self.batched_features(ids, batch_size, progress).to(self.device)).float().cpu()
        self.train(was_training)
        return raw

    @torch.no_grad()
    def score(
        self, prompts: list[PromptText], responses: list[str], batch_size: int = 16, progress: bool = False
    ) -> RewardScores:
        """Normalized rewards of (prompt, response) rows: mean (B,), std (B,) or None, per head (B, K)."""
        raw = self.raw_scores(self.encode(prompts, responses), batch_size, progress)
        return scores_from_heads(self.normalize(raw))


def build_reward_model(
    model_name: str,
    *,
    n_heads: int = 1,
    loss: str = "",
    max_length: int = 512,
    device: str | torch.device = "cpu",
    seed: int = 0,
    pooling: str = "last",
    chat_template: ChatTemplate = "always",
) -> RewardModel:
    """A fresh reward model on MODEL's trunk with K newly initialized heads (seeded)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    loaded = load_model(model_name, dtype="fp32", device=device)
    hidden = int(loaded.model.config.hidden_size)
    head = RewardHead(hidden, n_heads, torch.Generator().manual_seed(seed)).to(device)
    meta = RewardMeta(
        n_heads=n_heads,
        hidden_size=hidden,
        loss=loss,
        base_model=str(model_name),
        max_length=max_length,
        normalization=Normalization((1.0,) * n_heads, (0.0,) * n_heads),
        pooling=pooling,
        chat_template=chat_template,
    )
    return RewardModel(loaded.model, loaded.tokenizer, head, meta)


def save_reward_model(model: RewardModel, out_dir: str | Path) -> Path:
    """Write the trunk with a transformers ``score`` head (see `reward_hf`), ``reward_head.safetensors`` and
    ``reward.json`` into `out_dir`."""
    out = Path(out_dir)
    tokenizer = tokenizer_for_saving(model.tokenizer)  # pad != EOS, so transformers pools the EOS rlhfkit reads
    save_model_dir(model.backbone, tokenizer, out)
    head = model.head
    write_sequence_classifier(
        out, head.weight, head.bias, model.norm_gain, model.norm_bias, model.meta.pooling, tokenizer.pad_token_id
    )
    tensors = {
        "weight": model.head.weight.detach().float().cpu().contiguous(),
        "bias": model.head.bias.detach().float().cpu().contiguous(),
    }
    write_atomic(out / HEAD_FILE, lambda p: save_file(tensors, str(p)))
    meta = json.dumps(model.meta.to_json(), indent=2)
    # reward.json last: its presence marks a complete reward-model directory.
    write_text_atomic(out / META_FILE, meta + "\n")
    return out


def is_reward_model_dir(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file() and (Path(path) / HEAD_FILE).is_file()


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """Load a directory written by `save_reward_model` (e.g. a finished `rlhfkit reward train` run)."""
    where = Path(path)
    if not is_reward_model_dir(where):
        raise ModelLoadError(
            f"{where} is not a reward model directory (it needs {META_FILE} and {HEAD_FILE}); "
            f"train one with `rlhfkit reward train`"
        )
    meta = RewardMeta.from_json(json.loads((where / META_FILE).read_text()))
    loaded = load_model(where, dtype="fp32", device=device)
    tensors = load_file(str(where / HEAD_FILE))
    if tuple(tensors["weight"].shape) != (meta.n_heads, meta.hidden_size):
        raise ModelLoadError(
            f"{where / HEAD_FILE}: weight has shape {tuple(tensors['weight'].shape)}, "
            f"expected ({meta.n_heads}, {meta.hidden_size}) from {META_FILE}"
        )
    head = RewardHead(meta.hidden_size, meta.n_heads)
    with torch.no_grad():
        head.weight.copy_(tensors["weight"])
        head.bias.copy_(tensors["bias"])
    model = RewardModel(loaded.model, loaded.tokenizer, head.to(device), meta)
    return model.eval()
