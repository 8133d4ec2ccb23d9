"""The CLI contract: register(subparsers), create-user from stdin, export, defaults."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhfkit.feedback import cli
from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.store import FeedbackStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhfkit")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_register_adds_the_three_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLHFKIT_DB", raising=False)
    args = _parser().parse_args(["serve"])
    assert (args.db, args.host, args.port) == ("sqlite:///rlhfkit-feedback.db", "127.0.0.1", 8000)
    assert callable(args.func)
    args = _parser().parse_args(["admin", "create-user", "alice", "--role", "admin", "--db", "sqlite:///x.db"])
    assert (args.name, args.role, args.db) == ("alice", "admin", "sqlite:///x.db")
    args = _parser().parse_args(["export", "--project", "p", "--format", "pairs", "--output", "o.jsonl"])
    assert (args.aggregate, args.raw, args.container) == ("majority", False, None)
    with pytest.raises(SystemExit):
        _parser().parse_args(["admin", "create-user", "bob", "--role", "root"])
    monkeypatch.setenv("RLHFKIT_DB", "sqlite:///env.db")
    assert _parser().parse_args(["serve"]).db == "sqlite:///env.db"


def test_password_from_stdin_and_never_a_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    args = _parser().parse_args(["admin", "create-user", "root", "--role", "admin", "--db", url])
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-enough\n"))
    assert args.func(args) == 0
    store = FeedbackStore(url)
    assert store.login("root", "s3cret-enough")[1].user.role == "admin"
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))  # empty password: refused
    args = _parser().parse_args(["admin", "create-user", "other", "--role", "annotator", "--db", url])
    assert args.func(args) == 2
    assert [u.name for u in store.list_users()] == ["root"]
    store.close()


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store = FeedbackStore(url)
    store.create_project(ProjectSpec(name="p", overlap=1, task_type="demo"))
    store.add_items("p", [NewItem(prompt="write a haiku")])
    user = store.create_user("w", "annotator", "long enough").id
    task = store.next_task("p", user)
    store.submit(task.assignment_id, user, {"text": "an old silent pond"})
    store.close()
    out = tmp_path / "demos.jsonl"
    args = _parser().parse_args(["export", "--db", url, "--project", "p", "--format", "demos", "--output", str(out)])
    assert args.func(args) == 0
    assert json.loads(out.read_text()) == {"prompt": "write a haiku", "response": "an old silent pond"}
    assert "wrote 1 demos records" in capsys.readouterr().out
    missing = _parser().parse_args(["export", "--db", url, "--project", "nope", "--format", "demos",
                                    "--output", str(out)])
    assert missing.func(missing) == 2
    assert "no project named 'nope'" in capsys.readouterr().err


def test_module_entry_point_creates_a_user(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "rlhfkit.feedback.cli", "admin", "create-user", "first", "--role", "admin", "--db", url],
        input="a-long-password\n", capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "created admin 'first'" in done.stdout
