"""Which parameters train: LoRA adapters through `peft`, or freezing the bottom layers.

Freezing the bottom N layers is a cost-saving option from the RLHF literature (Ouyang et al. 2022
train the whole model; Ziegler et al. 2019 and later work show that the top layers carry most of the
preference signal); gradients then stop at layer N, so backward costs shrink with N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from rlhfkit.config import require

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class LoRAConfig:
    """Low-rank adapters (Hu et al. 2021) on the linear layers of the transformer."""

    r: int = 16
    """Rank of each adapter's update matrix."""
    alpha: float = 32.0
    """Scale: the update is multiplied by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter input (0 keeps RLHF log-probs deterministic)."""
    target_modules: str = "all-linear"
    """Which modules get adapters: 'all-linear', or a comma-separated list of module names (q_proj,v_proj)."""
    layers: int = 0
    """Adapters only in the top N transformer blocks (0, or N >= the model's depth: every block). Below
    them nothing trains, so backward stops there: less compute and activation memory."""

    def __post_init__(self) -> None:
        require(self.r > 0, f"lora.r must be positive, got {self.r}")
        require(self.layers >= 0, f"lora.layers must be >= 0, got {self.layers}")
        require(self.alpha > 0, f"lora.alpha must be positive, got {self.alpha}")
        require(0.0 <= self.dropout < 1.0, f"lora.dropout must be in [0, 1), got {self.dropout}")


def apply_lora(model: nn.Module, cfg: LoRAConfig) -> nn.Module:
    """Wrap `model` in a peft LoRA model; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = (
        cfg.target_modules
        if cfg.target_modules == "all-linear"
        else [m.strip() for m in cfg.target_modules.split(",") if m.strip()]
    )
    depth = len(decoder_layers(model))
    top: list[int] | None = None  # peft's default: every block
    if 0 < cfg.layers < depth:
        if targets == "all-linear":  # peft takes layers_to_transform only with named modules
            targets = sorted(
                {
                    n.rsplit(".", 1)[-1]
                    for layer in decoder_layers(model)
                    for n, m in layer.named_modules()
                    if isinstance(m, nn.Linear)
                }
            )
        top = list(range(depth - cfg.layers, depth))
    peft_cfg = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,  # type: ignore[arg-type]  # annotated int, but peft only divides it (alpha / r)
        lora_dropout=cfg.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        layers_to_transform=top,
    )
    return get_peft_model(model, peft_cfg)


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a decoder-only model (Llama, Mistral, Qwen, GPT-2 ...)."""
    base = model.get_base_model() if is_peft(model) else model  # type: ignore[operator]
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        node: object = base
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList):
            return node
    raise ValueError(f"cannot find the transformer layers of {type(base).__name__}")


def freeze_bottom_layers(model: nn.Module, n: int) -> None:
    """Freeze the embeddings and the bottom `n` transformer blocks (n = -1 freezes every block)."""
    layers = decoder_layers(model)
    n = len(layers) if n < 0 else n
    require(n <= len(layers), f"cannot freeze {n} layers: the model has {len(layers)}")
    if n == 0:
        return
    # `model` is a transformers causal LM, or peft's wrapper of one (get_base_model is peft's).
    base = cast("PreTrainedModel", model.get_base_model() if is_peft(model) else model)  # type: ignore[operator]
    embeddings = base.get_input_embeddings()
    tied = getattr(base.config, "tie_word_embeddings", False)
    # With tied embeddings the output head *is* the input embedding: freezing it would freeze the
    # head too, so the embeddings stay trainable in that case unless every layer is frozen.
    if not tied or n == len(layers):
        for p in embeddings.parameters():
            p.requires_grad_(False)
    for layer in layers[:n]:
        for p in layer.parameters():
            p.requires_grad_(False)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


@torch.no_grad()
def merged_copy(model: nn.Module) -> nn.Module:
    """A plain transformers model with the LoRA updates merged in (the original is left as it is)."""
    import copy

    if not is_peft(model):
        return model
    return copy.deepcopy(model).merge_and_unload()  # type: ignore[operator]


def choose_trainable(model: PreTrainedModel, lora: LoRAConfig | None, freeze_layers: int) -> nn.Module:
    """A causal LM ready to train: LoRA adapters when `lora` is set, else every weight above the bottom
    `freeze_layers` blocks (and the KV cache off, which only generation uses)."""
    model.config.use_cache = False
    trainable = apply_lora(model, lora) if lora is not None else model
    freeze_bottom_layers(trainable, freeze_layers)
    return trainable
