"""The feedback commands through the one CLI: defaults, create-user from stdin, export."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rlhfkit.cli import main
from rlhfkit.cli.parser import load, parse
from rlhfkit.cli.run import row_config
from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.store import FeedbackStore


def _config(argv: list[str]) -> Any:
    """The config `rlhfkit ARGV` would run with."""
    args = parse(argv)
    return row_config(args.row, args)


def test_the_three_commands_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLHFKIT_DB", raising=False)
    cfg = _config(["serve"])
    assert (cfg.db, cfg.host, cfg.port) == ("sqlite:///rlhfkit-feedback.db", "127.0.0.1", 8000)
    assert callable(load(parse(["serve"]).row.target))
    cfg = _config(["admin", "create-user", "alice", "--role", "admin", "--db", "sqlite:///x.db"])
    assert (cfg.name, cfg.role, cfg.db) == ("alice", "admin", "sqlite:///x.db")
    cfg = _config(["export", "--project", "p", "--format", "pairs", "--output", "o.jsonl"])
    assert (cfg.aggregate, cfg.raw, cfg.container) == ("majority", False, None)
    with pytest.raises(SystemExit):
        _config(["admin", "create-user", "bob", "--role", "root"])
    monkeypatch.setenv("RLHFKIT_DB", "sqlite:///env.db")
    assert _config(["serve"]).db == "sqlite:///env.db"


def test_password_from_stdin_and_never_a_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-enough\n"))
    assert main(["admin", "create-user", "root", "--role", "admin", "--db", url]) == 0
    store = FeedbackStore(url)
    assert store.login("root", "s3cret-enough")[1].user.role == "admin"
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))  # empty password: refused
    assert main(["admin", "create-user", "other", "--role", "annotator", "--db", url]) == 2
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
    assert main(["export", "--db", url, "--project", "p", "--format", "demos", "--output", str(out)]) == 0
    assert json.loads(out.read_text()) == {"prompt": "write a haiku", "response": "an old silent pond"}
    assert "wrote 1 demos records" in capsys.readouterr().out
    assert main(["export", "--db", url, "--project", "nope", "--format", "demos", "--output", str(out)]) == 2
    assert "no project named 'nope'" in capsys.readouterr().err


def test_module_entry_point_creates_a_user(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "rlhfkit.cli", "admin", "create-user", "first", "--role", "admin", "--db", url],
        input="a-long-password\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "created admin 'first'" in done.stdout
