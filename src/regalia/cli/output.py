"""How the CLI prints: aligned plain-text tables for people, JSON for programs.

Tables are plain text (no colours, no box drawing) so that they read the same
in a terminal, a log file and a pipe into ``grep`` or ``awk``::

    NAME     VISIBILITY    ROLE
    model    organization  admin
    dataset  organization  admin
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click

from regalia.service.views import to_jsonable

JSON = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
"""The ``--json`` flag of read commands (and of writes that print what they made)."""


def emit_json(obj: Any) -> None:
    """Print views (dataclasses, lists, dicts) as indented JSON on stdout."""
    click.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=False))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "") -> None:
    """Print rows as columns aligned under upper-case headers.

    The last column is not padded, so lines carry no trailing spaces. With no
    rows, ``empty`` is printed instead (nothing if it is empty).
    """
    body = [[cell(v) for v in row] for row in rows]
    if not body:
        if empty:
            click.echo(empty)
        return
    head = [h.upper() for h in headers]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    for row in [head, *body]:
        padded = [v.ljust(w) for v, w in zip(row[:-1], widths[:-1], strict=True)]
        click.echo("  ".join([*padded, row[-1]]).rstrip())


def cell(value: Any) -> str:
    """One table cell: lists joined by commas, times to the second, None as '-'."""
    if value is None or value == [] or value == "":
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def human_size(size: int) -> str:
    """``1536`` -> ``'1.5 KiB'``; bytes below 1 KiB are shown exactly."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
