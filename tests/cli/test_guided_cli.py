"""A guided command line: what rlhfkit is and the first command, a description for every command,
progress while scoring, and no database password printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.cli import COMMANDS, main
from rlhfkit.cli.parser import build_parser, load
from rlhfkit.data.projects import redact_url


def test_no_arguments_says_what_rlhfkit_is_and_the_first_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rlhfkit: RLHF from the first human judgment")
    assert "Try it first:   rlhfkit demo" in out and "COMMAND --help" in out
    assert "sft" in out and "demo" in out  # the command list follows


@pytest.mark.parametrize("row", COMMANDS, ids=lambda r: r.name)
def test_every_command_has_a_description(row, capsys: pytest.CaptureFixture[str]) -> None:
    assert row.help.strip() and (load(row.config).__doc__ or "").strip()
    with pytest.raises(SystemExit):
        build_parser([*row.words, "--help"]).parse_args([*row.words, "--help"])
    out = capsys.readouterr().out
    assert f"usage: rlhfkit {row.name}" in out and row.help.split("(")[0].strip() in out.replace("\n", " ")


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql+psycopg://ann:s3cret@db:5432/fb") == "postgresql+psycopg://ann:***@db:5432/fb"
    assert redact_url("sqlite:///feedback.db") == "sqlite:///feedback.db"


def test_admin_and_serve_never_print_the_database_password(monkeypatch, capsys, tmp_path: Path) -> None:
    from rlhfkit.feedback import commands

    monkeypatch.setattr(commands, "create_user", lambda *a: None)
    monkeypatch.setattr(commands, "read_password", lambda: "pw")
    url = "postgresql://ann:s3cret@localhost/fb"
    assert main(["admin", "create-user", "bob", "--role", "admin", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "ann:***@localhost" in out

    import uvicorn

    import rlhfkit.feedback.web.app as web_app

    monkeypatch.setattr(web_app, "create_app", lambda db, **kw: object())
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    assert main(["serve", "--db", url]) == 0
    assert "s3cret" not in capsys.readouterr().out


def test_reward_score_and_eval_show_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlhfkit.models.reward import build_reward_model, save_reward_model

    save_reward_model(build_reward_model("tiny", max_length=64), tmp_path / "rm")
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": "bad"} for i in range(5)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rm, out = str(tmp_path / "rm"), str(tmp_path / "s.jsonl")
    assert main(["reward", "score", "--model", rm, "--data", str(data), "--output", out]) == 0
    err = capsys.readouterr().err
    assert "scoring" in err and "10/10" in err  # 5 pairs: 10 sequences
    assert main(["reward", "eval", "--model", rm, "--data", str(data)]) == 0
    assert "10/10" in capsys.readouterr().err
    assert main(["reward", "eval", "--model", rm, "--data", str(data), "progress=false"]) == 0
    assert "scoring" not in capsys.readouterr().err
