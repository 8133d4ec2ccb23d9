"""The errors that mean "the user's input is wrong": the CLI prints them as one clear line and exits 2."""

from __future__ import annotations

from rlhfkit.config import ConfigError
from rlhfkit.data.errors import DataError
from rlhfkit.models.loading import ModelLoadError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, DataError, ModelLoadError, FileNotFoundError, FloatingPointError)
