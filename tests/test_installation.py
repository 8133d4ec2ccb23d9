"""Installation: torch as a range (the pinned CPU build installed first by README and Makefile),
adapters of the bundled model that name a portable base, and missing optional packages reported
when the config is built, before any data or model loads."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import pytest

from rlhfkit.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_torch_is_a_range_in_the_package_and_pinned_first_in_readme_and_makefile() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch,) = [d for d in deps if d.split(">")[0].split("=")[0].split("<")[0].strip() == "torch"]
    assert "==" not in torch and ">=" in torch and "<" in torch
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.index("install -q torch==2.13.0") < makefile.index("install -q -e .")
    readme = (ROOT / "README.md").read_text()
    assert readme.index("pip install torch==2.13.0") < readme.index("pip install -e .")


def test_adapters_of_the_bundled_model_name_its_hub_id(tmp_path: Path) -> None:
    from rlhfkit.files import cache_dir
    from rlhfkit.models.adapters import LoRAConfig, apply_lora
    from rlhfkit.models.saving import portable_base_name, save_model_dir
    from rlhfkit.models.tiny import byte_tokenizer, tiny_model

    local = str(cache_dir() / "models" / "smollm2")
    assert portable_base_name(local) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert portable_base_name("/data/my-model") == "/data/my-model"  # a user's own directory stays
    model = tiny_model(0)
    model.config._name_or_path = local  # what loading the bundled model from its cache records
    model.name_or_path = local
    save_model_dir(apply_lora(model, LoRAConfig(r=2)), byte_tokenizer(), tmp_path / "run")
    config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def _missing(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))


def test_a_missing_wandb_fails_when_the_config_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlhfkit.train.dpo import DPOConfig

    _missing(monkeypatch, "wandb")
    with pytest.raises(ConfigError, match=r"report_to=wandb needs the package 'wandb'.*pip install 'rlhfkit\[wandb\]'"):
        DPOConfig(model="smollm2", data="x.jsonl", output=Path("/tmp/x"), report_to=("wandb",))


def test_a_missing_postgres_driver_fails_before_anything_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlhfkit.data.projects import parse_project_ref
    from rlhfkit.feedback.commands import ServeConfig

    _missing(monkeypatch, "psycopg")
    url = "postgresql://ann:s3cret@db/fb"
    with pytest.raises(ConfigError, match=r"pip install 'rlhfkit\[postgres\]'") as err:
        parse_project_ref(f"{url}#helpful")
    assert "s3cret" not in str(err.value)
    with pytest.raises(ConfigError, match=r"db=postgresql://ann:\*\*\*@db/fb needs the package 'psycopg'"):
        ServeConfig(db=url)
    assert parse_project_ref("sqlite:///x.db#p") is not None  # SQLite needs nothing
