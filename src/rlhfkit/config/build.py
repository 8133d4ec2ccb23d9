"""Building a config: defaults <- YAML file <- explicit flags <- ``key=value`` overrides, each value
coerced to its field's type, then the dataclass constructed (which validates it); and back to YAML."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rlhfkit.config.core import (
    VARIANTS,
    C,
    ConfigError,
    format_choices,
    is_config_class,
    literal_fields,
    type_hints,
    variant_key,
)
from rlhfkit.files import write_text_atomic


def _variant(options: tuple[Any, ...], value: dict[str, Any], name: str) -> type:
    key = variant_key(options)
    if key is None:
        raise ConfigError(f"{name}: a union of configs needs a Literal tag field shared by its members")
    tags = {literal_fields(o)[key][0]: o for o in options}
    tag = value.get(key, next(iter(tags)))
    if tag not in tags:
        raise ConfigError(f"{name}.{key} must be one of {format_choices(tuple(tags))}, got {tag!r}")
    return tags[tag]


def _coerce_union(value: Any, tp: Any, name: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    options = tuple(a for a in args if a is not type(None))
    if isinstance(value, tuple(o for o in options if is_config_class(o))):
        return value
    if isinstance(value, dict) and variant_key(options):
        return _coerce(value, _variant(options, value, name), name)
    for arg in options:
        try:
            return _coerce(value, arg, name)
        except ConfigError:
            continue
    raise ConfigError(f"{name}: {value!r} matches none of {tp}")


def _coerce_sequence(value: Any, tp: Any, name: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")] if value else []
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{name}: expected a list, got {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args, strict=True))
    item = args[0] if args else Any
    out = [_coerce(v, item, name) for v in value]
    return tuple(out) if origin is tuple else out


def _coerce_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _coerce_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {value!r}") from None


def _coerce_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None


def _coerce_str(value: Any, name: str) -> str:
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{name}: expected text, got {value!r}")
    return str(value)


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _coerce_bool,
    int: _coerce_int,
    float: _coerce_float,
    str: _coerce_str,
    Path: lambda value, _name: Path(value),
}
"""Scalar type -> ``fn(value, field name)`` converting a YAML or command-line value."""


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert a YAML/CLI value to the annotated type `tp`, or raise ConfigError naming the field."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _coerce_union(value, tp, name)
    if origin is Literal:
        options = typing.get_args(tp)
        if value not in options:
            raise ConfigError(f"{name} must be one of {format_choices(options)}, got {value!r}")
        return value
    if is_config_class(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping for {tp.__name__}, got {value!r}")
        return _construct(tp, value, prefix=f"{name}.")
    if origin in (tuple, list):
        return _coerce_sequence(value, tp, name)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    return _SCALARS[tp](value, name) if tp in _SCALARS else value


def _over_default(f: dataclasses.Field, value: Any) -> Any:
    """A partial mapping for a nested config field lands on that field's own default instance, so
    ``sampling.temperature=1.0`` keeps the other values a parent config chose for `sampling`. For a
    union of configs, the default of the member the mapping names (`VARIANTS`)."""
    if not isinstance(value, dict):
        return value
    default = f.default
    variants = f.metadata.get(VARIANTS)
    if variants:
        key = variant_key(tuple({type(v) for v in variants.values()}))
        default = variants.get(value.get(key, getattr(default, key, None)), default) if key else default
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return {**to_dict(default), **value}
    return value


def _construct(cls: type[C], values: dict[str, Any], prefix: str = "") -> C:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = type_hints(cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(f"unknown config key {prefix}{key}{hint}; {cls.__name__} has: {', '.join(fields)}")
    kwargs = {k: _coerce(_over_default(fields[k], v), hints[k], prefix + k) for k, v in values.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required config value(s): {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}" if prefix and not str(e).startswith(prefix) else str(e)) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{prefix or cls.__name__ + ': '}{e}") from e


def complete(cls: type[C], partial: Any, **values: Any) -> C:
    """A `cls` config from the fields of `partial` that `cls` has, with `values` on top.

    How a stage of the loop becomes a trainer's config: it holds the trainer's settings (e.g. a
    `PPOSettings`, every knob but the run's inputs and output) and the loop adds those.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kept = {f.name: getattr(partial, f.name) for f in dataclasses.fields(partial) if f.name in names}
    return cls(**{**kept, **values})


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"lora.r=16"`` -> ``(["lora", "r"], 16)``; the value is read as YAML (so 1e-5, true, [1,2] work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _deep_set(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            node = tree[key] = to_dict(node) if dataclasses.is_dataclass(node) else {}
        tree = node
    tree[path[-1]] = value


def build_config(
    cls: type[C],
    *,
    yaml_path: str | Path | None = None,
    values: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> C:
    """Defaults <- YAML file <- `values` (explicit flags) <- ``key=value`` overrides, then validate."""
    tree: dict[str, Any] = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
        tree.update(loaded)
    for key, value in (values or {}).items():
        if value is not None:
            _deep_set(tree, key.split("."), value)
    for text in overrides:
        path_keys, value = parse_override(text)
        _deep_set(tree, path_keys, value)
    return _construct(cls, tree)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A YAML-safe dict of a config (paths as strings, tuples as lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


def save_config(cfg: Any, path: Path) -> None:
    write_text_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(cls: type[C], path: Path) -> C:
    return build_config(cls, yaml_path=path)
