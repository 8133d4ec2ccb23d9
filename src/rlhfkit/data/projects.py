"""``DBURL#PROJECT``: training records straight from a project of the feedback app's database.

Several judgments of one item become records by an aggregation chosen in the spec:
``DBURL#PROJECT?aggregate=majority`` (the default), ``?aggregate=bradley-terry`` (``bradley_terry``
also reads) or ``?aggregate=raw`` (one record per judgment); see `rlhfkit.feedback.aggregate`.

The one parser of such specs (`parse_project_ref`, strict variant `project_ref`) and the one way to
read them (`read_project_records`). The reader is found through the Python entry point group
``rlhfkit.record_sources`` (name ``feedback``, declared in ``pyproject.toml``) rather than imported:
the data layer sits below the feedback app and must not import it, and another package can register
a source of its own the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Literal, NamedTuple, TypeAlias, get_args

from rlhfkit.config.packages import require_database_driver
from rlhfkit.data.records import Record, RecordKind

DB_SCHEMES = ("sqlite:", "postgresql:", "postgresql+", "postgres:", "mysql:", "mysql+")
"""URL prefixes that make a data spec a database (SQLAlchemy dialects, with or without a driver)."""

RECORD_SOURCES = "rlhfkit.record_sources"
"""Entry point group of project readers."""

FEEDBACK_SOURCE = "feedback"
"""Entry point name of the feedback app's reader (``rlhfkit.feedback.source:project_records``)."""

Aggregation: TypeAlias = Literal["majority", "bradley-terry", "raw"]
"""How several judgments of one item become records: an aggregator, or ``raw`` (one per judgment)."""

ProjectReader: TypeAlias = Callable[[str, str, RecordKind, Aggregation], list[Record]]
"""``reader(url, project, kind, aggregate) -> records``: what a record source provides."""

AGGREGATIONS: tuple[Aggregation, ...] = get_args(Aggregation)
"""Every aggregation a spec may choose."""

_EXPECTED = "expected DBURL#PROJECT[?aggregate=majority|bradley-terry|raw] (e.g. sqlite:///feedback.db#my-project), got {spec!r}"


class ProjectRef(NamedTuple):
    """A project in a database: ``sqlite:///feedback.db#my-project`` -> (url, project).

    A named tuple, so that ``url, project, aggregate = ref`` reads it.
    """

    url: str
    """SQLAlchemy database URL."""
    project: str
    """Project name."""
    aggregate: Aggregation = "majority"
    """How an item's judgments become records (``?aggregate=`` in the spec)."""


def redact_url(url: str) -> str:
    """`url` with its password replaced by ``***`` (``postgresql://u:***@host/db``): what may be printed or logged."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))


def parse_project_ref(spec: str) -> ProjectRef | None:
    """The project `spec` names, or None when it is not a database source (a file, ``hf:NAME``...).

    A spec that starts like a database URL and holds a ``#`` is meant as ``DBURL#PROJECT``, so a
    malformed one (no ``://``, nothing after the last ``#``) raises ValueError instead of being read
    as a file name.
    """
    if not (spec.startswith(DB_SCHEMES) and "#" in spec):
        return None
    url, _, rest = spec.rpartition("#")
    project, _, query = rest.partition("?")
    if not project or "://" not in url:
        raise ValueError(_EXPECTED.format(spec=spec))
    require_database_driver(url, f"the data source {redact_url(url)}#{project}")
    if not query:
        return ProjectRef(url, project)
    key, _, value = query.partition("=")
    value = value.replace("_", "-")
    if key != "aggregate" or value not in AGGREGATIONS:
        raise ValueError(f"{spec!r}: after the project only ?aggregate={'|'.join(AGGREGATIONS)} is understood")
    return ProjectRef(url, project, value)


def project_ref(spec: str) -> ProjectRef:
    """Like `parse_project_ref`, for callers that accept nothing else: raises ValueError otherwise."""
    ref = parse_project_ref(spec)
    if ref is None:
        raise ValueError(_EXPECTED.format(spec=spec))
    return ref


def project_reader(name: str = FEEDBACK_SOURCE) -> ProjectReader:
    """The reader registered as `name` in `RECORD_SOURCES` (LookupError when none is installed)."""
    found = entry_points(group=RECORD_SOURCES, name=name)
    if not found:
        raise LookupError(
            f"no record source {name!r} in entry point group {RECORD_SOURCES!r}: install rlhfkit "
            "(pip install -e .) so that its entry points are registered"
        )
    reader: ProjectReader = next(iter(found)).load()
    return reader


def read_project_records(ref: ProjectRef, kind: RecordKind, aggregate: Aggregation | None = None) -> list[Record]:
    """Records of `kind` from the project `ref` names, each item's judgments reduced by `aggregate`
    (None: the spec's own choice, `ref.aggregate`).

    Example: ``read_project_records(project_ref("sqlite:///feedback.db#helpful-v1"), "pairs")``.
    """
    return project_reader()(ref.url, ref.project, kind, aggregate or ref.aggregate)
