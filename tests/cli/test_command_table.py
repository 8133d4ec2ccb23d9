"""The one command table: every row parses, documents its config, reads --config and key=value, and
every error reaches the user through the same mapping."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from rlhfkit.cli import COMMANDS, Command, main
from rlhfkit.cli.parser import load
from rlhfkit.config import FIELDS_EPILOG, ConfigError
from rlhfkit.feedback.errors import Invalid

ROWS = {row.name: row for row in COMMANDS}

EXPECTED = {
    "sft",
    "generate",
    "ppo",
    "grpo",
    "rloo",
    "dpo",
    "reward train",
    "reward eval",
    "reward score",
    "models",
    "report",
    "serve",
    "admin create-user",
    "export",
    "loop",
    "eval",
    "judge",
    "cai",
    "demo",
}

SAMPLES: dict[str, tuple[list[str], dict[str, Any], dict[str, Any]]] = {
    "generate": ([], {"prompts": "p.jsonl"}, {"output": "c.jsonl"}),
    "reward eval": ([], {"model": "rm", "data": "d.jsonl"}, {"batch_size": 4}),
    "reward score": ([], {"model": "rm", "data": "d.jsonl"}, {"output": "s.jsonl"}),
    "models": ([], {}, {}),
    "report": (["RUN"], {}, {"run_dir": "other-run"}),
    "serve": ([], {"host": "0.0.0.0"}, {"port": 9000}),
    "admin create-user": (["alice"], {"db": "sqlite:///x.db"}, {"role": "annotator"}),
    "export": ([], {"project": "p", "format": "pairs"}, {"output": "o.jsonl"}),
    "loop": ([], {"prompts": "p.jsonl"}, {"output": "loop-dir"}),
    "eval": ([], {"judge": "gold:sentiment", "policy": "a", "baseline": "b"}, {"prompts": "p.jsonl"}),
    "demo": ([], {"output": "demo-dir"}, {"serve": True}),
    "judge": ([], {"project": "p", "judge": "tiny"}, {"limit": 3}),
    "cai": ([], {"prompts": "p.jsonl"}, {"output": "cai-dir"}),
}
"""Non-training rows -> (positional arguments, values in a --config file, key=value overrides)."""


def _fake_target(monkeypatch: pytest.MonkeyPatch, row: Command, returns: Any = None) -> list[Any]:
    """Replace the row's target; the list collects the configs it is called with."""
    module, name = row.target.split(":")
    seen: list[Any] = []

    def target(cfg: Any) -> Any:
        seen.append(cfg)
        return returns

    monkeypatch.setattr(importlib.import_module(module), name, target)
    return seen


def test_every_command_is_one_row() -> None:
    assert set(ROWS) == EXPECTED and len(ROWS) == len(COMMANDS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_row_builds_its_parser_and_help_lists_its_fields(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    row = ROWS[name]
    cls = load(row.config)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[union-attr]
    assert callable(load(row.target))
    hints = typing.get_type_hints(cls)
    assert all(flag.field in hints for flag in row.flags)
    with pytest.raises(SystemExit) as done:
        main([*row.words, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: rlhfkit {name}" in out and FIELDS_EPILOG.strip() in out
    for f in dataclasses.fields(cls):
        assert f"  {f.name}" in out


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_non_training_command_reads_a_config_file_and_overrides(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = ROWS[name]
    assert not row.writes_report
    positionals, in_file, overrides = SAMPLES[name]
    config = tmp_path / "cmd.yaml"
    config.write_text(yaml.safe_dump(in_file))
    seen = _fake_target(monkeypatch, row)
    argv = [*row.words, *positionals, "--config", str(config), *(f"{k}={v}" for k, v in overrides.items())]
    assert main(argv) == 0
    (cfg,) = seen
    for key, value in {**in_file, **overrides}.items():
        assert str(getattr(cfg, key)) == str(value), key


def test_models_has_no_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "colour=red"]) == 2
    assert capsys.readouterr().err.startswith("rlhfkit models: error: unknown config key colour")


def test_a_switch_leaves_the_config_file_value_unless_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text("model: rm\ndata: d.jsonl\njson: true\n")
    seen = _fake_target(monkeypatch, ROWS["reward eval"])
    assert main(["reward", "eval", "--config", str(config)]) == 0
    assert main(["reward", "eval", "--model", "rm2", "--data", "d.jsonl", "--skip-invalid", "--batch-size", "3"]) == 0
    assert seen[0].json is True and seen[1].json is False
    assert (seen[1].model, seen[1].skip_invalid, seen[1].batch_size) == ("rm2", True, 3)


def test_export_spells_container_as(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_target(monkeypatch, ROWS["export"])
    assert main(["export", "--project", "p", "--format", "demos", "--output", "o", "--as", "jsonl", "--raw"]) == 0
    assert (seen[0].container, seen[0].raw) == ("jsonl", True)


def test_a_feedback_error_exits_2_with_the_command_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module, name = ROWS["admin create-user"].target.split(":")

    def refuse(cfg: Any) -> None:
        raise Invalid("the password is too short")

    monkeypatch.setattr(importlib.import_module(module), name, refuse)
    assert main(["admin", "create-user", "bob", "--role", "admin"]) == 2
    assert capsys.readouterr().err == "rlhfkit admin create-user: error: the password is too short\n"


def test_a_config_error_exits_2_with_the_command_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reward", "eval", "--data", "d.jsonl"]) == 2
    assert capsys.readouterr().err == "rlhfkit reward eval: error: model is required (a reward model directory)\n"
    assert main(["serve", "port=0"]) == 2
    assert capsys.readouterr().err.startswith("rlhfkit serve: error: port must be in 1..65535")


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (KeyboardInterrupt(), 130, "interrupted\n"),
        (ConfigError("bad value"), 2, "rlhfkit eval: error: bad value\n"),
        (FileNotFoundError("no such file: p.jsonl"), 2, "rlhfkit eval: error: no such file: p.jsonl\n"),
    ],
)
def test_interrupts_and_user_errors_map_to_exit_codes(
    raised: BaseException, code: int, line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module, name = ROWS["eval"].target.split(":")

    def fail(cfg: Any) -> None:
        raise raised

    monkeypatch.setattr(importlib.import_module(module), name, fail)
    assert main(["eval", "--judge", "gold:sentiment", "--policy", "a", "--baseline", "b", "--prompts", "p"]) == code
    assert capsys.readouterr().err == line


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    module, name = ROWS["models"].target.split(":")

    def broken(cfg: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(importlib.import_module(module), name, broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])


def test_a_trainer_row_writes_the_report_and_prints_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n')
    seen = _fake_target(monkeypatch, ROWS["dpo"], returns=run_dir)
    assert main(["dpo", "--model", "tiny", "--data", "pairs.jsonl", "--output", str(run_dir)]) == 0
    assert capsys.readouterr().out == f"{run_dir}\n"
    assert f"<title>DPO ({seen[0].loss}) of tiny" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize(
    ("argv", "title"),
    [
        (["sft", "--model", "tiny", "--data", "d.jsonl"], "SFT of tiny"),
        (["reward", "train", "--model", "tiny", "--data", "p.jsonl"], "Reward model on tiny"),
        (["dpo", "--model", "tiny", "--data", "p.jsonl", "loss=ipo"], "DPO (ipo) of tiny"),
        (["ppo", "--policy", "tiny", "--reward", "rm", "--prompts", "p.jsonl"], "PPO of tiny against rm"),
    ],
)
def test_trainer_rows_title_their_reports(
    argv: list[str], title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = ROWS[" ".join(argv[:2]) if argv[0] == "reward" else argv[0]]
    assert row.writes_report
    _fake_target(monkeypatch, row, returns=tmp_path)
    assert main([*argv, "--output", str(tmp_path)]) == 0
    assert f"<title>{title}" in (tmp_path / "report.html").read_text()


def test_feedback_choices_match_the_export_tables() -> None:
    from rlhfkit.feedback import commands as feedback_cli
    from rlhfkit.feedback.export import AGGREGATIONS, EXPORT_KINDS, WRITERS

    assert typing.get_args(feedback_cli.ExportFormat) == EXPORT_KINDS
    assert typing.get_args(feedback_cli.Aggregation) == AGGREGATIONS
    assert typing.get_args(feedback_cli.Container) == tuple(sorted(WRITERS))


def test_a_password_is_never_a_config_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "create-user", "eve", "--role", "admin", "password=hunter22"]) == 2
    assert "unknown config key password" in capsys.readouterr().err


def test_top_level_help_imports_no_command_module() -> None:
    code = (
        "import sys; from rlhfkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'sqlalchemy', 'rlhfkit.train', 'rlhfkit.feedback')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "HEAVY []" in out and "reward" in out and "create-user" not in out


def test_a_group_without_its_subcommand_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin"]) == 2
    assert "create-user" in capsys.readouterr().out
    assert main([]) == 0  # bare `rlhfkit`: a guide, not an error (tests/cli/test_guided_cli.py)
    assert "COMMAND" in capsys.readouterr().out


def test_overrides_may_stand_between_flags(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen = _fake_target(monkeypatch, ROWS["admin create-user"])
    argv = ["admin", "create-user", "carol", "--role", "admin", "db=sqlite:///a.db", "--db", "sqlite:///b.db"]
    assert main(argv) == 0
    assert (seen[0].name, seen[0].db) == ("carol", "sqlite:///a.db")  # key=value overrides a flag
    with pytest.raises(SystemExit):
        main(["admin", "create-user", "carol", "--role", "admin", "stray"])
    assert "unrecognized arguments: stray" in capsys.readouterr().err


def test_run_command_runs_a_built_config_as_the_cli_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rlhfkit.cli import run_command
    from rlhfkit.train.sft import SFTConfig

    _fake_target(monkeypatch, ROWS["sft"], returns=tmp_path)
    assert run_command("sft", SFTConfig(model="tiny", data="d.jsonl", output=tmp_path)) == tmp_path
    assert "<title>SFT of tiny" in (tmp_path / "report.html").read_text() and capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="no command 'train'"):
        run_command("train", SFTConfig(data="d.jsonl", output=tmp_path))
