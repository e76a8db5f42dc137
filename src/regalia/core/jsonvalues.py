"""Strict JSON: what a version's metadata may hold, and JSON text without
``NaN`` or ``Infinity``, no I/O.

Python's :mod:`json` reads and writes ``NaN``, ``Infinity`` and ``-Infinity``,
which are not JSON: PostgreSQL refuses them, SQLite's JSON functions fail on
them, and a response holding one cannot be encoded. Every value a client
stores goes through :func:`validate_json`, and request bodies are read with
:func:`loads_strict`::

    >>> validate_json({"metrics": {"loss": float("nan")}}, "metadata")
    Traceback (most recent call last):
    ...
    regalia.errors.InvalidRequest: metadata['metrics']['loss'] is NaN: JSON has no NaN or Infinity
"""

from __future__ import annotations

import json
import math
from typing import Any

from regalia.errors import InvalidRequest

MAX_DEPTH = 64  # nesting of objects and arrays
MAX_INT = 2**64 - 1  # |n| of an integer; larger numbers go as strings
_NOT_JSON = "JSON has no NaN or Infinity"


def _where(base: str, path: list[str | int]) -> str:
    return base + "".join(f"[{p!r}]" for p in path)


def _float_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _text_problem(text: str) -> str | None:
    """What in ``text`` cannot be stored or sent as JSON, if anything."""
    if text.isascii() and "\x00" not in text:
        return None
    if "\x00" in text:
        return "contains the character U+0000 (NUL), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not Unicode text)"
    return None


def _check_text(text: str, base: str, path: list[str | int], what: str) -> None:
    problem = _text_problem(text)
    if problem is not None:
        where = _where(base, path)
        raise InvalidRequest(f"{what} of {where} {problem}", where=where)


def validate_json(value: Any, what: str = "value") -> Any:
    """Check that ``value`` is JSON: objects with string keys, arrays, strings,
    finite numbers, booleans and null; returns it unchanged.

    Args:
        value: the decoded value, e.g. a version's metadata.
        what: how errors name it (``"metadata"``).

    Raises:
        InvalidRequest: naming the key path, e.g. ``metadata['m']['loss'] is NaN``:
            a NaN or infinite number, an integer past ±(2**64 - 1), a non-string
            key, a value of another type (a set, bytes, an object), text with
            U+0000 or a lone surrogate, or nesting deeper than 64.
    """
    path: list[str | int] = []

    def walk(node: Any, depth: int) -> None:
        if node is None or isinstance(node, bool | str):
            if isinstance(node, str):
                _check_text(node, what, path, "the text")
            return
        if isinstance(node, int):
            if not -MAX_INT <= node <= MAX_INT:
                raise InvalidRequest(
                    f"{_where(what, path)} is an integer past ±{MAX_INT} (2**64 - 1), the "
                    "range of JSON integers here; send bigger numbers as text",
                    where=_where(what, path),
                )
            return
        if isinstance(node, float):
            if not math.isfinite(node):
                raise InvalidRequest(
                    f"{_where(what, path)} is {_float_name(node)}: {_NOT_JSON}",
                    where=_where(what, path),
                )
            return
        if depth >= MAX_DEPTH:
            raise InvalidRequest(
                f"{_where(what, path)} is nested more than {MAX_DEPTH} levels deep",
                where=_where(what, path),
            )
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    raise InvalidRequest(
                        f"{_where(what, path)} has the key {key!r}: JSON object keys are text",
                        where=_where(what, path),
                    )
                path.append(key)
                _check_text(key, what, path, "the key")
                walk(item, depth + 1)
                path.pop()
            return
        if isinstance(node, list | tuple):
            for i, item in enumerate(node):
                path.append(i)
                walk(item, depth + 1)
                path.pop()
            return
        raise InvalidRequest(
            f"{_where(what, path)} is a {type(node).__name__}, which JSON cannot hold",
            where=_where(what, path),
        )

    walk(value, 0)
    return value


def validate_metadata(metadata: Any) -> dict[str, Any] | None:
    """A version's metadata: None, or a JSON object (:func:`validate_json`).

    Raises:
        InvalidRequest: naming the key path, e.g. ``metadata['m']['loss'] is NaN``.
    """
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest(f"metadata must be a JSON object, not a {type(metadata).__name__}")
    validate_json(metadata, "metadata")
    return metadata


def validate_text(text: str | None, what: str) -> str | None:
    """Free text (a description): no U+0000 and no lone surrogates, which
    PostgreSQL cannot store and a JSON response cannot carry.

    Raises:
        InvalidRequest: naming ``what``.
    """
    problem = None if text is None else _text_problem(text)
    if problem is not None:
        raise InvalidRequest(f"{what} {problem}")
    return text


class NotJson(ValueError):
    """A JSON text that uses ``NaN``, ``Infinity`` or a number out of range; the
    message names where (``body['metadata']['loss'] is NaN: ...``)."""


class _Refused(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Refused(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(text)
    return value


def loads_strict(text: str | bytes, what: str = "the request") -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity``, ``-Infinity`` and numbers
    that overflow to infinity (``1e999``). Integers are read whole; where they
    are kept, :func:`validate_json` bounds them.

    Raises:
        NotJson: one of those, naming its key path (``what['metrics']['loss']``),
            or a number too long to read (over 4300 digits);
        json.JSONDecodeError: any other malformed text.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except _Refused:
        pass
    except json.JSONDecodeError:
        raise
    except ValueError:  # int(): "Exceeds the limit (4300 digits)"
        raise NotJson(f"{what} holds a number too long to read") from None
    # Read it again, keeping the refused values, to say where the first one is.
    value = json.loads(text)
    try:
        validate_json(value, what)
    except InvalidRequest as exc:
        raise NotJson(exc.message) from None
    raise NotJson(f"{what} is not JSON: {_NOT_JSON}")


def dumps_strict(value: Any) -> str:
    """Compact JSON text of ``value``.

    Raises:
        InvalidRequest: ``value`` is not JSON (see :func:`validate_json`), naming where.
    """
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        validate_json(value, "the request")
        raise InvalidRequest("the request cannot be sent as JSON") from None
