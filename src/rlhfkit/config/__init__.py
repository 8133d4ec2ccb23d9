"""Typed configuration: frozen dataclasses whose field docstrings are the documentation.

Every command has one config dataclass. A field is documented by a string literal on the line after
it (the attribute-docstring convention that litgpt and tyro read); `field_docs` reads those strings
from the source, so `--help` and the docs can never drift from the code.

Configs are frozen: a run never mutates its config. `build_config` merges, in order, the defaults,
a YAML file, explicit command-line flags and ``key=value`` overrides (dotted keys reach nested
configs: ``lora.r=16``), coerces each value to the field's type and then constructs the dataclass,
whose ``__post_init__`` rejects contradictory values.
"""

from rlhfkit.config.build import build_config, complete, load_config, parse_override, save_config, to_dict
from rlhfkit.config.core import VARIANTS, Config, ConfigError, require, variant_key
from rlhfkit.config.help import FIELDS_EPILOG, REQUIRED_HELP, field_docs, format_fields

__all__ = [
    "FIELDS_EPILOG",
    "REQUIRED_HELP",
    "VARIANTS",
    "Config",
    "ConfigError",
    "build_config",
    "complete",
    "field_docs",
    "format_fields",
    "load_config",
    "parse_override",
    "require",
    "save_config",
    "to_dict",
    "variant_key",
]
