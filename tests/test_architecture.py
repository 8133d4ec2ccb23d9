"""docs/architecture.md names real modules, and the layering it describes holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
SRC = REPO / "src"


def _paths() -> list[tuple[str, Path]]:
    """Every path the page writes in backticks, resolved: ``rlhfkit/...`` and ``src/...`` from the
    source root, bare ``x.py`` / ``dir/`` names within the package of the bullet they sit in (at any
    depth: ``trainer.py`` of ``train/reward/``). A backticked path on a line that says "(new)" is an
    example of what to add, not a module."""
    out: list[tuple[str, Path]] = []
    package: Path | None = None
    for line in DOC.read_text().splitlines():
        if line.startswith("- `rlhfkit/"):
            package = SRC / line.split("`")[1]
        elif not line.startswith("  "):
            package = None
        if "(new)" in line:
            continue
        for name in re.findall(r"`([\w./]+)`", line):
            if name.startswith("rlhfkit/"):
                out.append((name, SRC / name))
            elif name.startswith("src/"):
                out.append((name, REPO / name))
            elif package is not None and re.fullmatch(r"\w+\.py|\w+/", name):
                found = sorted(package.rglob(name.rstrip("/")))
                out.append((name, found[0] if found else package / name))
    return out


def _modules() -> list[str]:
    """Every dotted ``rlhfkit.x`` module name in the layers diagram."""
    text = DOC.read_text()
    diagram = text[text.index("```\nrlhfkit.cli") :]
    return sorted(set(re.findall(r"\brlhfkit(?:\.\w+)+", diagram[: diagram.index("```", 4)])))


@pytest.mark.parametrize(("name", "path"), _paths(), ids=lambda x: str(x))
def test_every_path_the_page_names_exists(name: str, path: Path) -> None:
    assert path.exists(), f"docs/architecture.md names {name}, which does not exist"


@pytest.mark.parametrize("module", _modules())
def test_every_layer_is_a_package(module: str) -> None:
    path = SRC / module.replace(".", "/")
    assert path.is_dir() or path.with_suffix(".py").exists(), module


def test_the_page_names_enough() -> None:
    assert len(_paths()) > 80 and len(_modules()) == 12


def test_import_contracts_hold() -> None:
    """import-linter's contracts (.importlinter): the layers above, no cycles between siblings."""
    import subprocess
    import sys

    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(lint), str(REPO / ".importlinter")], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
