"""DPO and its variants: `config` (the knobs), `batches` (preference groups as token rows, layouts,
the reference cache), `terms` (a batch's loss terms), `evaluation` (held-out metrics, sampled KL),
`trainer` (the loop)."""

from rlhfkit.train.dpo.config import DPOConfig, DPOSettings
from rlhfkit.train.dpo.trainer import dpo

__all__ = ["DPOConfig", "DPOSettings", "dpo"]
