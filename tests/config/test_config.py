"""The config machinery: docs from attribute docstrings, YAML + overrides, validation, shipped YAMLs."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml

from rlhfkit.config import ConfigError, build_config, field_docs, format_fields
from rlhfkit.train.sft import SFTConfig

REPO = Path(__file__).resolve().parents[2]

# Shipped YAML files are named <command>_<anything>.yaml; the prefix names the config class.
CONFIG_CLASSES = {
    "sft": "rlhfkit.train.sft:SFTConfig",
    "reward": "rlhfkit.train.reward:RewardConfig",
    "dpo": "rlhfkit.train.dpo:DPOConfig",
    "ppo": "rlhfkit.train.ppo:PPOConfig",
    "grpo": "rlhfkit.train.grpo:GRPOConfig",
    "loop": "rlhfkit.loop.config:LoopConfig",
    "generate": "rlhfkit.rollout.candidates:GenerateConfig",
    "cai": "rlhfkit.loop.cai.config:CAIConfig",
}


def _cls(ref: str) -> type:
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def all_config_classes() -> list[type]:
    out = []
    for ref in CONFIG_CLASSES.values():
        try:
            out.append(_cls(ref))
        except (ImportError, AttributeError):
            continue
    return out


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_yaml_validates(path: Path, tmp_path: Path) -> None:
    prefix = path.stem.split("_")[0]
    assert prefix in CONFIG_CLASSES, f"{path.name}: name it <command>_*.yaml with command in {list(CONFIG_CLASSES)}"
    cls = _cls(CONFIG_CLASSES[prefix])
    data = yaml.safe_load(path.read_text())
    # Fill required paths the YAML leaves to the command line.
    fill = {
        k: str(tmp_path / k) for k in ("output",) if k not in data and any(f.name == k for f in dataclasses.fields(cls))
    }
    for key in ("data", "prompts"):
        if key not in data and any(f.name == key for f in dataclasses.fields(cls)):
            fill[key] = str(tmp_path / f"{key}.jsonl")
    cfg = build_config(cls, yaml_path=path, values=fill)
    assert dataclasses.is_dataclass(cfg)


@pytest.mark.parametrize("cls", all_config_classes(), ids=lambda c: c.__name__)
def test_every_field_has_a_docstring(cls: type) -> None:
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not missing, f"{cls.__name__} fields without a docstring: {missing}"
    assert all(f.name in format_fields(cls) for f in dataclasses.fields(cls))


def test_yaml_then_flags_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: a.jsonl\nlr: 1.0e-4\nmax_steps: 7\n")
    cfg = build_config(
        SFTConfig,
        yaml_path=path,
        values={"output": "out", "data": "b.jsonl"},
        overrides=["max_steps=9", "lora.r=4", "report_to=[tensorboard]"],
    )
    assert (cfg.data, cfg.lr, cfg.max_steps, cfg.lora.r, cfg.report_to) == ("b.jsonl", 1e-4, 9, 4, ("tensorboard",))
    assert cfg.output == Path("out")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["max_stesp=3"], "did you mean max_steps"),
        (["max_steps=abc"], "max_steps: expected an integer"),
        (["max_steps=0"], "max_steps must be positive"),
        (["lora.r=4", "freeze_layers=2"], "set one of them"),
        (["schedule=wavy"], "schedule must be one of"),
        (["dtype=fp16"], "dtype must be auto, bf16 or fp32"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(SFTConfig, values={"data": "d.jsonl", "output": "o"}, overrides=overrides)


def test_missing_required_value() -> None:
    with pytest.raises(ConfigError, match="data is required"):
        build_config(SFTConfig, values={"output": "o"})


def test_configs_are_frozen() -> None:
    cfg = build_config(SFTConfig, values={"data": "d", "output": "o"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_help_lists_every_field_with_its_doc(capsys: pytest.CaptureFixture[str]) -> None:
    from rlhfkit.cli import main

    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(SFTConfig):
        assert f.name in out
    assert "Freeze the embeddings and this many bottom transformer layers" in out


@pytest.mark.parametrize(
    "argv, target",
    [
        (["sft"], "rlhfkit.train.sft:sft"),
        (["reward", "train"], "rlhfkit.train.reward:train_reward_model"),
    ],
)
def test_required_fields_may_come_from_the_config_file(
    argv: list[str], target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--data` and `--output` are required fields, but a --config file may hold them instead."""
    from rlhfkit.cli import main

    module, name = target.split(":")
    seen: list[object] = []
    monkeypatch.setattr(importlib.import_module(module), name, lambda cfg: seen.append(cfg))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"data": "demos.jsonl", "output": str(tmp_path / "run")}))
    assert main([*argv, "--config", str(config), "max_steps=3"]) == 0
    assert seen and seen[0].max_steps == 3 and str(seen[0].output) == str(tmp_path / "run")


def test_a_required_field_missing_everywhere_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    from rlhfkit.cli import main

    assert main(["sft", "--output", "o"]) == 2
    assert "data is required" in capsys.readouterr().err


# --- the typed machinery: Literal choices, tagged unions of configs, partial settings ----------


def test_a_literal_field_fails_at_construction_with_its_options() -> None:
    with pytest.raises(ConfigError, match="schedule must be one of cosine, linear, constant, got 'wavy'"):
        SFTConfig(data="d", output=Path("o"), schedule="wavy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="weights must be one of auto, master, fp32"):
        build_config(SFTConfig, values={"data": "d", "output": "o"}, overrides=["weights=half"])


def test_a_union_of_configs_is_chosen_by_its_tag_and_lands_on_that_variants_defaults() -> None:
    from rlhfkit.loop.config import DPO_STAGE, PPO_STAGE, DPOStage, LoopConfig, PPOStage

    base = {"output": "o", "policy_model": "tiny", "prompts": "p.jsonl"}
    ppo = build_config(LoopConfig, values=base, overrides=["policy.kl_target=2.5"])
    assert isinstance(ppo.policy, PPOStage) and ppo.policy.kl_target == 2.5
    assert ppo.policy.max_steps == PPO_STAGE.max_steps  # the loop's preset, not PPOSettings' default
    dpo = build_config(LoopConfig, values=base, overrides=["policy.method=dpo", "policy.beta=0.3"])
    assert isinstance(dpo.policy, DPOStage) and dpo.policy.beta == 0.3
    assert dpo.policy.max_length == DPO_STAGE.max_length
    with pytest.raises(ConfigError, match="policy.method must be one of ppo, dpo, grpo, rloo, got 'rlhf'"):
        build_config(LoopConfig, values=base, overrides=["policy.method=rlhf"])
    with pytest.raises(ConfigError, match="unknown config key policy.rollout_batch_size"):
        build_config(LoopConfig, values=base, overrides=["policy.method=dpo", "policy.rollout_batch_size=8"])
    # What a run writes as loop.yaml reads back as the same config.
    from rlhfkit.config import to_dict

    assert build_config(LoopConfig, values=to_dict(dpo)) == dpo


def test_complete_fills_a_partial_config_with_the_run_inputs(tmp_path: Path) -> None:
    from rlhfkit.config import complete
    from rlhfkit.train.sft import SFTSettings

    settings = SFTSettings(max_steps=3, lr=1e-3)
    cfg = complete(SFTConfig, settings, data="d.jsonl", output=tmp_path, lr=2e-3)
    assert (cfg.max_steps, cfg.lr, cfg.data, cfg.output) == (3, 2e-3, "d.jsonl", tmp_path)
    with pytest.raises(ConfigError, match="data is required"):
        complete(SFTConfig, settings, output=tmp_path)


def test_help_shows_the_defaults_a_parent_config_presets() -> None:
    from rlhfkit.loop.config import LoopConfig

    text = format_fields(LoopConfig)
    assert "reward.lr: float = 0.003" in text and "-- policy.method=dpo --" in text
    assert "policy.kl_controller: fixed|adaptive|pi = 'pi'" in text
