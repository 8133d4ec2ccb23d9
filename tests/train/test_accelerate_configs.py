"""The shipped Accelerate configs (configs/accelerate/*.yaml): each is read by Accelerate's own loader
and validated by `accelerate launch`'s argument check, so a key Accelerate does not know, or a
contradiction between engines, fails here and not on a user's cluster. DeepSpeed itself need not be
installed: its configs are parsed and validated, never started."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
EXPECTED = {
    "ddp.yaml": ("MULTI_GPU", "multi_gpu"),
    "fsdp.yaml": ("FSDP", "use_fsdp"),
    "deepspeed_zero2.yaml": ("DEEPSPEED", "use_deepspeed"),
    "deepspeed_zero3.yaml": ("DEEPSPEED", "use_deepspeed"),
}


def validated(path: Path):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(path), "train.py"])
    return _validate_launch_command(args)[0]


def test_every_shipped_config_is_expected() -> None:
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_loads_and_validates(name: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    kind, flag = EXPECTED[name]
    cfg = load_config_from_file(str(CONFIGS / name))
    assert cfg.distributed_type.value == kind
    assert cfg.mixed_precision == "no"  # rlhfkit picks bf16 itself (dtype=auto)
    args = validated(CONFIGS / name)
    assert getattr(args, flag) is True and args.num_processes == 2


def test_fsdp_shards_fully_one_unit_per_decoder_layer() -> None:
    from accelerate.utils.dataclasses import get_module_class_from_name
    from accelerate.utils.launch import prepare_multi_gpu_env

    env = prepare_multi_gpu_env(validated(CONFIGS / "fsdp.yaml"))
    assert env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert "FSDP_TRANSFORMER_CLS_TO_WRAP" not in env  # so Accelerate wraps the model's _no_split_modules
    from rlhfkit.models.tiny import tiny_model

    model = tiny_model(0)
    (layer_class,) = model._no_split_modules
    assert get_module_class_from_name(model, layer_class) is type(model.model.layers[0])


@pytest.mark.parametrize(("name", "stage"), [("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)])
def test_deepspeed_stage(name: str, stage: int) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    ds = load_config_from_file(str(CONFIGS / name)).deepspeed_config
    assert ds["zero_stage"] == stage
    assert ds["gradient_accumulation_steps"] == 1  # rlhfkit accumulates itself
