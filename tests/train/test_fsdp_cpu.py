"""How an FSDP launch's settings (the ``FSDP_*`` variables ``accelerate launch`` sets from
configs/accelerate/fsdp.yaml) become torch FSDP2's on CPU processes. The 2-process FSDP runs against
one process are in test_multiprocess.py."""

from __future__ import annotations

import pytest

from rlhfkit.config import ConfigError
from rlhfkit.train.fsdp import reshard_after_forward, unit_classes


@pytest.mark.parametrize(
    ("env", "reshard"),
    [
        ({}, True),
        ({"FSDP_SHARDING_STRATEGY": "FULL_SHARD"}, True),
        ({"FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP"}, False),
        ({"FSDP_SHARDING_STRATEGY": "2"}, False),  # Accelerate's number for SHARD_GRAD_OP
        ({"FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false"}, False),
    ],
)
def test_sharding_strategy_becomes_reshard_after_forward(env: dict[str, str], reshard: bool) -> None:
    assert reshard_after_forward(env) is reshard


@pytest.mark.parametrize("strategy", ["NO_SHARD", "HYBRID_SHARD", "3"])
def test_a_strategy_fsdp2_on_cpu_lacks_is_refused(strategy: str) -> None:
    with pytest.raises(ConfigError, match="FULL_SHARD or SHARD_GRAD_OP"):
        reshard_after_forward({"FSDP_SHARDING_STRATEGY": strategy})


def test_units_are_the_decoder_layers_unless_the_config_names_classes() -> None:
    from rlhfkit.models.tiny import tiny_model

    model = tiny_model(0)
    assert unit_classes(model, {}) == {"LlamaDecoderLayer"}
    assert unit_classes(model, {"FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer, LlamaMLP"}) == {
        "LlamaDecoderLayer",
        "LlamaMLP",
    }
    with pytest.raises(ConfigError, match="transformer layer"):
        unit_classes(model, {"FSDP_AUTO_WRAP_POLICY": "SIZE_BASED_WRAP"})
