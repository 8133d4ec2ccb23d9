"""Typed configuration: frozen dataclasses whose field docstrings are the documentation.

Every command has one config dataclass. A field is documented by a string literal on the line after
it (the attribute-docstring convention that litgpt and tyro read); `field_docs` reads those strings
from the source, so `--help` and the docs can never drift from the code.

Configs are frozen: a run never mutates its config. `build_config` merges, in order, the defaults,
a YAML file, explicit command-line flags and ``key=value`` overrides (dotted keys reach nested
configs: ``lora.r=16``), coerces each value to the field's type and then constructs the dataclass,
whose ``__post_init__`` rejects contradictory values.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type, or contradicts another value."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass and its bases: ``{field name: doc}``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _choices(options: tuple[Any, ...]) -> str:
    return ", ".join(str(o) for o in options)


@functools.cache
def _literal_fields(cls: type) -> dict[str, tuple[Any, ...]]:
    """``{field: options}`` of the fields of `cls` typed ``Literal[...]`` (optionally ``| None``)."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, tp in _hints(cls).items():
        args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if len(literals) == 1:
            out[name] = typing.get_args(literals[0]) + ((None,) if type(None) in args else ())
    return out


class Config:
    """Base of rlhfkit's typed configs (frozen dataclasses).

    On construction, however it happens (a YAML file, ``key=value``, or Python code), every field
    typed ``Literal[...]`` must hold one of its options, and the error lists them. A subclass's
    ``__post_init__`` calls ``super().__post_init__()`` first and then checks the relations between its
    own fields; configs that combine by inheritance (``PPOConfig(PPOSettings, TrainConfig)``) thereby
    run every base's checks exactly once.
    """

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)  # a mixed-in base's checks (see KLControlSettings)
        if parent is not None:
            parent()
        for name, options in _literal_fields(type(self)).items():
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(f"{name} must be one of {_choices(options)}, got {value!r}")


def variant_key(options: tuple[Any, ...]) -> str | None:
    """The field that tells the members of a union of configs apart: present in every member and
    typed ``Literal`` with one value each (``method: Literal["ppo"] = "ppo"``); None when there is none."""
    if not options or not all(_is_config(o) for o in options):
        return None
    common = set.intersection(*(set(_literal_fields(o)) for o in options))
    for name in sorted(common):
        tags = [_literal_fields(o)[name] for o in options]
        if all(len(t) == 1 for t in tags) and len({t[0] for t in tags}) == len(tags):
            return name
    return None


def _variant(options: tuple[Any, ...], value: dict[str, Any], name: str) -> type:
    key = variant_key(options)
    if key is None:
        raise ConfigError(f"{name}: a union of configs needs a Literal tag field shared by its members")
    tags = {_literal_fields(o)[key][0]: o for o in options}
    tag = value.get(key, next(iter(tags)))
    if tag not in tags:
        raise ConfigError(f"{name}.{key} must be one of {_choices(tuple(tags))}, got {tag!r}")
    return tags[tag]


def _coerce_union(value: Any, tp: Any, name: str) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    options = tuple(a for a in args if a is not type(None))
    if isinstance(value, tuple(o for o in options if _is_config(o))):
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
    bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str,
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
            raise ConfigError(f"{name} must be one of {_choices(options)}, got {value!r}")
        return value
    if _is_config(tp):
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


VARIANTS = "variants"
"""Field-metadata key of a union-of-configs field: ``{tag: default instance}`` per member, so that a
partial mapping (``policy.method=dpo policy.beta=0.2``) lands on that member's own defaults."""


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
    hints = _hints(cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(
            f"unknown config key {prefix}{key}{hint}; {cls.__name__} has: {', '.join(fields)}"
        )
    kwargs = {k: _coerce(_over_default(fields[k], v), hints[k], prefix + k) for k, v in values.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
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
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_config(cls: type[C], path: Path) -> C:
    return build_config(cls, yaml_path=path)


REQUIRED_HELP = " (required: here, in --config or as key=value)"
"""Help suffix of a --flag whose field the command needs but which --config or key=value may give."""

FIELDS_EPILOG = "config fields (set with --config FILE.yaml or key=value):\n"
"""Heading of the field list that every config-driven command's --help ends with."""


def _default(f: dataclasses.Field, instance: Any) -> Any:
    if instance is not None:
        return getattr(instance, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _config_union(tp: Any) -> tuple[type, ...]:
    """The config classes of a union-of-configs type (empty for any other type)."""
    if typing.get_origin(tp) not in (Union, types.UnionType):
        return ()
    options = tuple(a for a in typing.get_args(tp) if a is not type(None))
    return options if variant_key(options) else ()


def format_fields(cls: type, prefix: str = "", instance: Any = None) -> str:
    """Every field with its type, default and docstring: the body of ``--help``.

    `instance` (a nested config's default instance) supplies the defaults shown, so a section that a
    parent config presets (the loop's ``reward.lr``) shows the value that applies, not its class's."""
    docs, hints = field_docs(cls), _hints(cls)
    lines: list[str] = []
    for f in dataclasses.fields(cls):
        tp, default, doc = hints[f.name], _default(f, instance), docs.get(f.name, "")
        if _is_config(tp):
            lines.append(f"  {prefix}{f.name}.*  ({tp.__name__}) {doc}")
            lines.append(format_fields(tp, f"{prefix}{f.name}.", default))
        elif options := _config_union(tp):
            key = variant_key(options)
            lines.append(f"  {prefix}{f.name}.*  (by {prefix}{f.name}.{key}) {doc}")
            variants = f.metadata.get(VARIANTS, {})
            for member in options:
                tag = _literal_fields(member)[key][0]
                lines.append(f"  -- {prefix}{f.name}.{key}={tag} --")
                lines.append(format_fields(member, f"{prefix}{f.name}.", variants.get(tag)))
        else:
            shown = "required" if default is dataclasses.MISSING else repr(default)
            options = _literal_fields(cls).get(f.name)
            tname = "|".join(map(str, options)) if options else getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            lines.append(f"  {prefix}{f.name}: {tname} = {shown}")
            lines.extend("      " + line for line in textwrap.wrap(doc, 90))
    return "\n".join(lines)


def require(condition: bool, message: str) -> None:
    """Validation helper for ``__post_init__``: raise ConfigError(message) unless `condition`."""
    if not condition:
        raise ConfigError(message)
