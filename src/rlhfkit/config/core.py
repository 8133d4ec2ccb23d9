"""The base of rlhfkit's typed configs: `Config` (Literal fields checked on construction), `require`
for the relations between fields, and tagged unions of configs (`variant_key`, `VARIANTS`)."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal, TypeVar, Union

C = TypeVar("C")


class ConfigError(ValueError):
    """A config value is unknown, of the wrong type, or contradicts another value."""


def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def format_choices(options: tuple[Any, ...]) -> str:
    return ", ".join(str(o) for o in options)


@functools.cache
def literal_fields(cls: type) -> dict[str, tuple[Any, ...]]:
    """``{field: options}`` of the fields of `cls` typed ``Literal[...]`` (optionally ``| None``)."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, tp in type_hints(cls).items():
        args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
        literals = [a for a in args if typing.get_origin(a) is Literal]
        if len(literals) == 1:
            out[name] = typing.get_args(literals[0]) + ((None,) if type(None) in args else ())
    return out


@functools.cache
def literal_sequence_fields(cls: type) -> dict[str, tuple[Any, ...]]:
    """``{field: options}`` of the fields of `cls` typed ``tuple[Literal[...], ...]`` (a set of choices)."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, tp in type_hints(cls).items():
        args = typing.get_args(tp)
        if (
            typing.get_origin(tp) is tuple
            and len(args) == 2
            and args[1] is Ellipsis
            and typing.get_origin(args[0]) is Literal
        ):
            out[name] = typing.get_args(args[0])
    return out


class Config:
    """Base of rlhfkit's typed configs (frozen dataclasses).

    On construction, however it happens (a YAML file, ``key=value``, or Python code), every field
    typed ``Literal[...]`` must hold one of its options (each item, for ``tuple[Literal[...], ...]``),
    and the error lists them. A subclass's
    ``__post_init__`` calls ``super().__post_init__()`` first and then checks the relations between its
    own fields; configs that combine by inheritance (``PPOConfig(PPOSettings, TrainConfig)``) thereby
    run every base's checks exactly once.
    """

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)  # a mixed-in base's checks (see KLControlSettings)
        if parent is not None:
            parent()
        cls: type = type(self)  # not type[Config]: mypy takes that for unhashable (python/mypy#11470)
        chosen = [(name, getattr(self, name), options) for name, options in literal_fields(cls).items()]
        chosen += [
            (name, v, options) for name, options in literal_sequence_fields(cls).items() for v in getattr(self, name)
        ]
        for name, value, options in chosen:
            if value not in options:
                raise ConfigError(f"{name} must be one of {format_choices(options)}, got {value!r}")


def variant_key(options: tuple[Any, ...]) -> str | None:
    """The field that tells the members of a union of configs apart: present in every member and
    typed ``Literal`` with one value each (``method: Literal["ppo"] = "ppo"``); None when there is none."""
    if not options or not all(is_config_class(o) for o in options):
        return None
    common = set.intersection(*(set(literal_fields(o)) for o in options))
    for name in sorted(common):
        tags = [literal_fields(o)[name] for o in options]
        if all(len(t) == 1 for t in tags) and len({t[0] for t in tags}) == len(tags):
            return name
    return None


VARIANTS = "variants"
"""Field-metadata key of a union-of-configs field: ``{tag: default instance}`` per member, so that a
partial mapping (``policy.method=dpo policy.beta=0.2``) lands on that member's own defaults."""


def require(condition: bool, message: str) -> None:
    """Validation helper for ``__post_init__``: raise ConfigError(message) unless `condition`."""
    if not condition:
        raise ConfigError(message)
