"""Optional packages, checked when a config asks for them: before any data or model loads.

A missing package would otherwise surface as an ImportError deep inside a run, after minutes of
loading a model. `require_package` raises a `ConfigError` naming the setting that needs the package
and the command that installs it (the extras of ``pyproject.toml``).
"""

from __future__ import annotations

import importlib.util

from rlhfkit.config.core import ConfigError

OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {
    "wandb": ("wandb", "pip install 'rlhfkit[wandb]'"),
    "postgres": ("psycopg", "pip install 'rlhfkit[postgres]'"),
}
"""Feature -> (the module it imports, the install command)."""

POSTGRES_SCHEMES = ("postgresql:", "postgresql+psycopg:", "postgres:")
"""Database URLs that need the PostgreSQL driver (the feedback app maps them all to psycopg 3)."""


def require_package(feature: str, wanted_by: str) -> None:
    """Raise ConfigError unless the package `feature` needs is importable; `wanted_by` names the setting."""
    module, install = OPTIONAL_PACKAGES[feature]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{wanted_by} needs the package '{module}', which is not installed: {install}")


def require_database_driver(url: str, wanted_by: str) -> None:
    """The PostgreSQL driver for a ``postgresql://`` URL (SQLite needs nothing)."""
    if url.startswith(POSTGRES_SCHEMES):
        require_package("postgres", wanted_by)
