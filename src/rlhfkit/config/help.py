"""Configs document themselves: each field's attribute docstring is its ``--help`` text."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from itertools import pairwise
from typing import Any, Union

from rlhfkit.config.core import VARIANTS, is_config_class, literal_fields, type_hints, variant_key


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
        for node, nxt in pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


REQUIRED_HELP = " (required: here, in --config or as key=value)"
"""Help suffix of a --flag whose field the command needs but which --config or key=value may give."""

FIELDS_EPILOG = "config fields (set with --config FILE.yaml or key=value):\n"
"""Heading of the field list that every config-driven command's --help ends with."""


def _default(f: dataclasses.Field, instance: Any) -> Any:
    if instance is not None:
        return getattr(instance, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
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
    docs, hints = field_docs(cls), type_hints(cls)
    lines: list[str] = []
    for f in dataclasses.fields(cls):
        tp, default, doc = hints[f.name], _default(f, instance), docs.get(f.name, "")
        if is_config_class(tp):
            lines.append(f"  {prefix}{f.name}.*  ({tp.__name__}) {doc}")
            lines.append(format_fields(tp, f"{prefix}{f.name}.", default))
        elif options := _config_union(tp):
            key = variant_key(options)
            assert key is not None  # _config_union returns only options that have a variant key
            lines.append(f"  {prefix}{f.name}.*  (by {prefix}{f.name}.{key}) {doc}")
            variants = f.metadata.get(VARIANTS, {})
            for member in options:
                tag = literal_fields(member)[key][0]
                lines.append(f"  -- {prefix}{f.name}.{key}={tag} --")
                lines.append(format_fields(member, f"{prefix}{f.name}.", variants.get(tag)))
        else:
            shown = "required" if default is dataclasses.MISSING else repr(default)
            choices = literal_fields(cls).get(f.name)
            tname = (
                "|".join(map(str, choices))
                if choices
                else getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            )
            lines.append(f"  {prefix}{f.name}: {tname} = {shown}")
            lines.extend("      " + line for line in textwrap.wrap(doc, 90))
    return "\n".join(lines)
