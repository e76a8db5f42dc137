"""Mongo-style filters, orderings and page cursors (SPEC §6): parsing only, no I/O.

A filter is the dict W&B's API takes, e.g.::

    {"$and": [
        {"tag": "prod"},
        {"metadata.accuracy": {"$gte": 0.9}},
        {"$or": [{"alias": "best"}, {"version": {"$lt": "v3"}}]},
    ]}

:func:`parse_filter` validates it for one entity (``registry``, ``collection``
or ``version``) and returns a small typed tree (:class:`And`, :class:`Or`,
:class:`Not`, :class:`Compare`, :class:`Exists`) that ``regalia.store.filters``
compiles into SQL. Every mistake raises :class:`~regalia.errors.InvalidFilter`
whose message names the exact problem::

    >>> parse_filter({"name": {"$foo": 1}}, "registry")
    Traceback (most recent call last):
    ...
    regalia.errors.InvalidFilter: unknown operator '$foo' on field 'name' ...

Semantics (the same on every database):

* ``{"f": v}`` is ``{"f": {"$eq": v}}``; several keys in one dict, or several
  operators on one field, are ANDed.
* ``$ne`` and ``$nin`` are the negation of ``$eq`` and ``$in``: they also match
  a missing metadata key, and for ``tag`` / ``alias`` they mean "no tag /
  alias matches". Every other operator on ``tag`` / ``alias`` means "some tag /
  alias matches".
* ``$not`` works at the top (``{"$not": {...}}``) and on a field
  (``{"name": {"$not": {"$regex": "^tmp"}}}``).
* Names, descriptions, types and tags compare exactly (case-sensitively);
  aliases ignore case, like their uniqueness rule (R5).
* ``$regex`` searches anywhere in the string; ``(?i)`` at its start or
  ``"$options": "i"`` makes it ignore case. Patterns are RE2 syntax (matched
  in linear time, :mod:`regalia.core.patterns`), and only syntax that RE2 and
  PostgreSQL read the same way is accepted. ``.`` matches a newline too.
* Limits (:mod:`regalia.core.limits`): clauses, nesting, ``$in`` values and
  ``$regex`` clauses per filter, pattern length and size; each one passed is
  an :class:`InvalidFilter` naming it (``details["limit"]``).
* ``version`` takes an index (``3``) or a version string (``"v3"``).
* ``metadata.KEY`` (``metadata.train.lr`` for nested keys) compares only
  values of the same JSON type: a number with numbers, a string with strings,
  a boolean with booleans. ``{"metadata.k": None}`` matches a missing key or
  a JSON null.
* ``created_at`` / ``updated_at`` take ISO-8601 strings or datetimes; times
  without a zone are UTC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, get_args

from regalia.core.jsonvalues import MAX_INT as MAX_JSON_INT
from regalia.core.limits import (
    MAX_FILTER_CLAUSES,
    MAX_FILTER_DEPTH,
    MAX_FILTER_VALUES,
    MAX_REGEX_CLAUSES,
)
from regalia.core.names import MAX_ID, MAX_VERSION_INDEX
from regalia.core.patterns import pattern_problem
from regalia.errors import InvalidFilter

Entity = Literal["registry", "collection", "version"]
CompareOp = Literal["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$regex"]
Scalar: TypeAlias = str | int | float | bool | datetime | None
Value: TypeAlias = Scalar | tuple[Scalar, ...]

ENTITIES: tuple[Entity, ...] = get_args(Entity)
COMPARE_OPS: tuple[CompareOp, ...] = get_args(CompareOp)
OPERATORS = ("$and", "$or", "$not", *COMPARE_OPS, "$exists")
RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")

# Canonical field -> kind of value it holds, per entity.
_TEXT, _DATETIME, _INDEX, _METADATA = "text", "datetime", "index", "metadata"
FIELDS: dict[Entity, dict[str, str]] = {
    "registry": {
        "name": _TEXT,
        "description": _TEXT,
        "visibility": _TEXT,
        "created_at": _DATETIME,
        "updated_at": _DATETIME,
    },
    "collection": {
        "name": _TEXT,
        "description": _TEXT,
        "tag": _TEXT,
        "type": _TEXT,
        "created_at": _DATETIME,
        "updated_at": _DATETIME,
    },
    "version": {
        "name": _TEXT,
        "registry": _TEXT,
        "description": _TEXT,
        "tag": _TEXT,
        "alias": _TEXT,
        "version": _INDEX,
        "type": _TEXT,
        "metadata": _METADATA,
        "created_at": _DATETIME,
        "updated_at": _DATETIME,
    },
}
# Other spellings users write -> canonical field.
_SYNONYMS: dict[Entity, dict[str, str]] = {
    "registry": {},
    "collection": {"tags": "tag"},
    "version": {"tags": "tag", "aliases": "alias", "collection": "name"},
}

ORDER_FIELDS: dict[Entity, tuple[str, ...]] = {
    "registry": ("created_at", "updated_at", "name"),
    "collection": ("created_at", "updated_at", "name"),
    "version": ("created_at", "updated_at", "name", "version"),
}
DEFAULT_ORDER = "-created_at"

_VERSION_STRING = re.compile(r"^v([0-9]{1,10})$")
_MAX_INDEX = MAX_VERSION_INDEX
_METADATA_KEY_FORBIDDEN = set('".,{}[]\\')


# -- the tree -------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    """``field op value``.

    ``field`` is canonical (``tags`` is read as ``tag``); for ``metadata`` the
    key path is in ``key`` (``metadata.train.lr`` → ``("train", "lr")``).
    ``$in`` / ``$nin`` hold a tuple; ``$regex`` holds the pattern, with
    ``ignore_case`` set by ``(?i)`` or ``$options: "i"``.
    """

    field: str
    op: CompareOp
    value: Value
    key: tuple[str, ...] = ()
    ignore_case: bool = False


@dataclass(frozen=True)
class Exists:
    """``{field: {"$exists": exists}}``; ``key`` as in :class:`Compare`."""

    field: str
    exists: bool
    key: tuple[str, ...] = ()


@dataclass(frozen=True)
class And:
    """All of ``items``; ``And(())`` matches everything."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """Any of ``items``; ``Or(())`` matches nothing."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node: TypeAlias = And | Or | Not | Compare | Exists

MATCH_ALL: Node = And(())


# -- parsing ----------------------------------------------------------------------


def parse_filter(filter: Mapping[str, Any] | None, entity: Entity, *, name: str = "filter") -> Node:
    """Validate a Mongo-style ``filter`` for ``entity`` and return its tree.

    Args:
        filter: the filter dict; ``None`` or ``{}`` matches everything.
        entity: ``"registry"``, ``"collection"`` or ``"version"``; decides
            which fields exist.
        name: what the caller called the filter (``"registry_filter"``...),
            for messages.

    Raises:
        InvalidFilter: an unknown field or operator, a value of the wrong type,
            a pattern that is not RE2 syntax, or a filter past one of the
            limits of :mod:`regalia.core.limits` (``details["limit"]`` names
            it); the message names the problem and where it is.

    Example::

        >>> parse_filter({"version": {"$gte": "v2"}}, "version")
        Compare(field='version', op='$gte', value=2, key=(), ignore_case=False)
    """
    if entity not in ENTITIES:
        raise InvalidFilter(f"unknown entity {entity!r}; use one of {', '.join(ENTITIES)}")
    if filter is None:
        return MATCH_ALL
    return _parse_doc(filter, entity, name, _Budget(name), 0)


@dataclass
class _Budget:
    """What a filter has used of the limits so far (it fails as soon as one is passed)."""

    name: str
    clauses: int = 0
    values: int = 0
    regexes: int = 0

    def clause(self, where: str, *, ahead: int = 0) -> None:
        """Count one clause; ``ahead``: so many more are sure to follow."""
        self.clauses += 1
        if self.clauses + ahead > MAX_FILTER_CLAUSES:
            raise InvalidFilter(
                f"{self.name} has more than {MAX_FILTER_CLAUSES} clauses (the limit, passed at "
                f"{where}); narrow it, or use one '$in' for a list of values, e.g. "
                "{'alias': {'$in': ['a', 'b']}}",
                limit="filter_clauses",
                maximum=MAX_FILTER_CLAUSES,
            )

    def nest(self, depth: int, where: str) -> int:
        if depth + 1 > MAX_FILTER_DEPTH:
            raise InvalidFilter(
                f"{self.name} nests '$and', '$or' and '$not' more than {MAX_FILTER_DEPTH} deep "
                f"(the limit, passed at {where})",
                limit="filter_depth",
                maximum=MAX_FILTER_DEPTH,
            )
        return depth + 1

    def list_values(self, count: int, where: str) -> None:
        self.values += count
        if self.values > MAX_FILTER_VALUES:
            raise InvalidFilter(
                f"{self.name} has more than {MAX_FILTER_VALUES} values in its '$in' and '$nin' "
                f"lists (the limit, all lists together; passed at {where}, a list of {count})",
                limit="filter_values",
                maximum=MAX_FILTER_VALUES,
            )

    def regex(self, where: str) -> None:
        self.regexes += 1
        if self.regexes > MAX_REGEX_CLAUSES:
            raise InvalidFilter(
                f"{self.name} has more than {MAX_REGEX_CLAUSES} '$regex' clauses (the limit, "
                f"passed at {where})",
                limit="filter_regexes",
                maximum=MAX_REGEX_CLAUSES,
            )


def _parse_doc(doc: object, entity: Entity, where: str, budget: _Budget, depth: int) -> Node:
    if not isinstance(doc, Mapping):
        raise InvalidFilter(f"{where} must be an object, got {_kind(doc)}")
    items: list[Node] = []
    for raw_key, value in doc.items():
        if not isinstance(raw_key, str):
            raise InvalidFilter(f"{where} has a non-string key {raw_key!r}")
        if raw_key in ("$and", "$or"):
            if not isinstance(value, list | tuple) or not value:
                raise InvalidFilter(f"'{raw_key}' needs a non-empty list of filters")
            inner = budget.nest(depth, f"'{raw_key}'")
            # Each (non-empty) item is a clause at least: a list too long fails unread.
            budget.clause(f"'{raw_key}', a list of {len(value)} filters", ahead=len(value))
            parts = tuple(
                _parse_doc(part, entity, f"'{raw_key}' item {i}", budget, inner)
                for i, part in enumerate(value)
            )
            items.append(And(parts) if raw_key == "$and" else Or(parts))
        elif raw_key == "$not":
            inner = budget.nest(depth, "'$not'")
            budget.clause("'$not'")
            items.append(Not(_parse_doc(value, entity, "'$not'", budget, inner)))
        elif raw_key.startswith("$"):
            raise InvalidFilter(
                f"unknown operator '{raw_key}' at the top of a filter; "
                "use '$and', '$or', '$not' or a field name"
            )
        else:
            items.append(_parse_field(raw_key, value, entity, budget, depth))
    return items[0] if len(items) == 1 else And(tuple(items))


def _resolve_field(raw: str, entity: Entity) -> tuple[str, tuple[str, ...]]:
    fields = FIELDS[entity]
    head, dot, rest = raw.partition(".")
    if head == "metadata" and "metadata" in fields:
        if not dot:
            raise InvalidFilter(
                "field 'metadata' needs a key: write 'metadata.KEY' (e.g. 'metadata.accuracy')"
            )
        return "metadata", _metadata_key(raw, rest)
    field = _SYNONYMS[entity].get(raw, raw)
    if field not in fields:
        known = sorted([*fields, *_SYNONYMS[entity]])
        known = [f"{f}.KEY" if f == "metadata" else f for f in known]
        raise InvalidFilter(
            f"unknown field '{raw}' for {entity} filters; known fields: {', '.join(known)}"
        )
    return field, ()


def _metadata_key(raw: str, rest: str) -> tuple[str, ...]:
    parts = tuple(rest.split("."))
    for part in parts:
        if (
            not part
            or part != part.strip()
            or part.lower() == "null"
            or any(ch in _METADATA_KEY_FORBIDDEN or ord(ch) < 32 for ch in part)
        ):
            raise InvalidFilter(
                f"invalid metadata key in field '{raw}': each dot-separated part must be "
                "non-empty, not 'null', without leading or trailing spaces, and without "
                'any of " , { } [ ] \\ or control characters'
            )
    return parts


def _parse_field(raw: str, value: object, entity: Entity, budget: _Budget, depth: int) -> Node:
    field, key = _resolve_field(raw, entity)
    kind = FIELDS[entity][field]
    if isinstance(value, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in value):
        return _parse_ops(raw, field, key, kind, value, budget, depth)
    if isinstance(value, Mapping):
        raise InvalidFilter(
            f"field '{raw}' cannot be compared with an object; use operators such as "
            "{'$eq': ...} (and 'metadata.KEY.SUBKEY' for nested metadata)"
        )
    budget.clause(f"field '{raw}'")
    return Compare(field, "$eq", _scalar(raw, kind, "$eq", value), key)


def _parse_ops(
    raw: str,
    field: str,
    key: tuple[str, ...],
    kind: str,
    ops: Mapping[Any, Any],
    budget: _Budget,
    depth: int,
) -> Node:
    items: list[Node] = []
    options = ops.get("$options")
    if options is not None and "$regex" not in ops:
        raise InvalidFilter(f"'$options' on field '{raw}' needs a '$regex' next to it")
    for op, value in ops.items():
        if not isinstance(op, str) or not op.startswith("$"):
            raise InvalidFilter(
                f"field '{raw}' mixes operators with the plain key {op!r}; "
                "use only operators such as '$eq', '$gt'"
            )
        if op == "$options":
            continue
        where = f"'{op}' on field '{raw}'"
        if op != "$not":
            budget.clause(where)
        if op == "$not":
            inner = budget.nest(depth, where)
            budget.clause(where)
            if isinstance(value, str) and kind in (_TEXT, _METADATA):
                budget.clause(where)  # the pattern under it
                items.append(Not(_regex(raw, field, key, kind, value, None, budget)))
            elif isinstance(value, Mapping) and value:
                items.append(Not(_parse_ops(raw, field, key, kind, value, budget, inner)))
            else:
                raise InvalidFilter(
                    f"'$not' on field '{raw}' needs an object of operators, "
                    f"e.g. {{'$not': {{'$eq': ...}}}}, got {_kind(value)}"
                )
        elif op == "$exists":
            if not isinstance(value, bool):
                raise InvalidFilter(f"'$exists' on field '{raw}' needs true or false")
            items.append(Exists(field, value, key))
        elif op == "$regex":
            items.append(_regex(raw, field, key, kind, value, options, budget))
        elif op in ("$in", "$nin"):
            if not isinstance(value, list | tuple):
                raise InvalidFilter(f"'{op}' on field '{raw}' needs a list, got {_kind(value)}")
            budget.list_values(len(value), where)
            values = tuple(_scalar(raw, kind, op, v) for v in value)
            items.append(Compare(field, "$in" if op == "$in" else "$nin", values, key))
        elif op in COMPARE_OPS:
            compare_op: CompareOp = _as_compare_op(op)
            items.append(Compare(field, compare_op, _scalar(raw, kind, op, value), key))
        elif op in ("$and", "$or"):
            raise InvalidFilter(
                f"'{op}' cannot be used inside field '{raw}'; put it at the top: "
                f"{{'{op}': [{{'{raw}': ...}}, ...]}}"
            )
        else:
            raise InvalidFilter(
                f"unknown operator '{op}' on field '{raw}'; "
                f"use one of {', '.join(o for o in OPERATORS if o not in ('$and', '$or'))}"
            )
    if not items:
        raise InvalidFilter(f"field '{raw}' has no operator")
    return items[0] if len(items) == 1 else And(tuple(items))


def _as_compare_op(op: str) -> CompareOp:
    for known in COMPARE_OPS:
        if op == known:
            return known
    raise AssertionError(op)  # pragma: no cover


def _regex(
    raw: str,
    field: str,
    key: tuple[str, ...],
    kind: str,
    value: object,
    options: object,
    budget: _Budget,
) -> Compare:
    if kind not in (_TEXT, _METADATA):
        raise InvalidFilter(f"'$regex' is not supported on field '{raw}'; it is not text")
    if not isinstance(value, str):
        raise InvalidFilter(f"'$regex' on field '{raw}' needs a string, got {_kind(value)}")
    budget.regex(f"'$regex' on field '{raw}'")
    ignore_case = False
    if options is not None:
        if not isinstance(options, str) or set(options) - {"i"}:
            raise InvalidFilter(
                f"'$options' on field '{raw}' may only be 'i' (ignore case), got {options!r}"
            )
        ignore_case = "i" in options
    pattern = value
    if pattern.startswith("(?i)"):
        pattern, ignore_case = pattern[4:], True
    problem = pattern_problem(pattern, also=_unportable)
    if problem:
        raise InvalidFilter(f"'$regex' on field '{raw}' {problem.text}", field=raw, **problem.limit)
    return Compare(field, "$regex", pattern, key, ignore_case)


# Escapes RE2 reads one way and PostgreSQL another (or refuses): letter -> why.
_UNPORTABLE_ESCAPES = {
    "b": "'\\b' or '\\B' (PostgreSQL reads them differently)",
    "B": "'\\b' or '\\B' (PostgreSQL reads them differently)",
    "p": "a Unicode class '\\p' or '\\P' (PostgreSQL lacks them)",
    "P": "a Unicode class '\\p' or '\\P' (PostgreSQL lacks them)",
    "Q": "'\\Q...\\E' (PostgreSQL lacks it; escape each character instead)",
    "E": "'\\Q...\\E' (PostgreSQL lacks it; escape each character instead)",
    "z": "'\\z' (write '$')",
    "C": "'\\C' (PostgreSQL lacks it)",
}
_PG_MAX_REPEAT = 255  # PostgreSQL's RE_DUP_MAX
_REPEAT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


def _unportable(pattern: str) -> str | None:
    """What in an RE2 ``pattern`` PostgreSQL reads differently or refuses, if anything."""
    i, end, after_quantifier = 0, len(pattern), False
    while i < end:
        ch = pattern[i]
        if ch == "\\":
            letter = pattern[i + 1 : i + 2]
            if letter in _UNPORTABLE_ESCAPES:
                return _UNPORTABLE_ESCAPES[letter]
            if letter == "x" and pattern[i + 2 : i + 3] == "{":
                return "'\\x{...}' (write the character itself, or '\\xHH')"
            i, after_quantifier = i + 2, False
            continue
        if ch == "[":  # a character class; a leading '^' or ']' belongs to it
            i += 1
            i += pattern[i : i + 1] == "^"
            i += pattern[i : i + 1] == "]"
            while i < end and pattern[i] != "]":
                if pattern[i] == "\\":
                    letter = pattern[i + 1 : i + 2]
                    if letter in _UNPORTABLE_ESCAPES and letter not in "bB":
                        return _UNPORTABLE_ESCAPES[letter]
                    i += 2
                elif pattern.startswith("[:", i):  # [:alpha:] inside the class
                    close = pattern.find(":]", i + 2)
                    i = close + 2 if close >= 0 else i + 1
                else:
                    i += 1
            i, after_quantifier = i + 1, False
            continue
        if ch == "(" and pattern[i + 1 : i + 2] == "?":
            if pattern[i + 2 : i + 3] != ":":
                return (
                    "an inline flag or a named group (only '(?i)' at the start and "
                    "'(?:...)' may follow '(?')"
                )
            i, after_quantifier = i + 2, False
            continue
        if ch == "{":
            if pattern[i + 1 : i + 2] == ",":
                return "'{,n}' (write '{0,n}')"
            repeat = _REPEAT.match(pattern, i)
            if repeat and any(n and int(n) > _PG_MAX_REPEAT for n in repeat.groups()):
                return f"a repetition count above {_PG_MAX_REPEAT} (PostgreSQL's limit)"
        if ch == "+" and after_quantifier:
            return "a possessive quantifier such as '*+'"
        after_quantifier = ch in "*+?}"
        i += 1
    return None


def _scalar(raw: str, kind: str, op: str, value: object) -> Scalar:
    """Check and normalize one operand of ``op`` on a field of ``kind``."""
    what = f"'{op}' on field '{raw}'"
    if isinstance(value, list | tuple | Mapping):
        hint = "; use '$in' for a list of values" if op == "$eq" else ""
        raise InvalidFilter(f"{what} needs a single value, got {_kind(value)}{hint}")
    if kind == _TEXT:
        if not isinstance(value, str):
            raise InvalidFilter(f"{what} needs a string, got {_kind(value)}")
        return _text(what, value)
    if kind == _DATETIME:
        return _datetime(what, value)
    if kind == _INDEX:
        return _index(what, value)
    # metadata: any JSON scalar; order comparisons need a number or a string.
    if value is None or isinstance(value, bool):
        if op in RANGE_OPS:
            raise InvalidFilter(f"{what} needs a number or a string, got {_kind(value)}")
        return value
    if isinstance(value, int) and abs(value) > MAX_JSON_INT:
        raise InvalidFilter(f"{what} needs a number within ±(2**64 - 1), as JSON integers are")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidFilter(f"{what} needs a finite number, got {value!r}")
        return value
    if isinstance(value, str):
        return _text(what, value)
    raise InvalidFilter(f"{what} needs a string, number, boolean or null, got {_kind(value)}")


def _text(what: str, value: str) -> str:
    if "\x00" in value:
        raise InvalidFilter(f"{what} contains a NUL character")
    return value


def _datetime(what: str, value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidFilter(
                f"{what} needs an ISO-8601 date-time such as '2024-05-01T12:00:00Z', got {value!r}"
            ) from None
    else:
        raise InvalidFilter(f"{what} needs an ISO-8601 date-time string, got {_kind(value)}")
    return as_utc(moment)


def _index(what: str, value: object) -> int:
    if isinstance(value, str):
        match = _VERSION_STRING.match(value)
        if not match:
            raise InvalidFilter(f"{what} needs a version like 'v3' or 3, got {value!r}")
        index = int(match.group(1))
    elif isinstance(value, int) and not isinstance(value, bool):
        index = value
    else:
        raise InvalidFilter(f"{what} needs a version like 'v3' or 3, got {_kind(value)}")
    if not 0 <= index <= _MAX_INDEX:
        raise InvalidFilter(f"{what}: version index {index} is out of range")
    return index


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


# -- ordering ---------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """A sort order: ``field`` ascending, or descending when ``descending``.

    Ties are broken by the row id, in the same direction, so every order is total.
    """

    field: str
    descending: bool

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.field


def parse_order(order: str | None, entity: Entity) -> Order:
    """Read ``"created_at"``, ``"-created_at"`` (descending), ``"name"``, ...

    ``None`` or ``""`` means :data:`DEFAULT_ORDER` (newest first). Versions can
    also be ordered by ``version`` (their index in the collection).

    Raises:
        InvalidFilter: the field cannot be ordered by.
    """
    if not order:
        order = DEFAULT_ORDER
    if not isinstance(order, str):
        raise InvalidFilter(f"order must be a string such as '-created_at', got {_kind(order)}")
    descending = order.startswith("-")
    field = order[1:] if descending or order.startswith("+") else order
    if field not in ORDER_FIELDS[entity]:
        choices = ", ".join(f"{f}, -{f}" for f in ORDER_FIELDS[entity])
        raise InvalidFilter(f"cannot order {entity} results by {order!r}; use one of {choices}")
    return Order(field, descending)


# -- cursors ----------------------------------------------------------------------

CursorKey: TypeAlias = str | int | datetime


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last row's sort value and id, for one entity and order."""

    entity: Entity
    order: Order
    key: CursorKey
    id: int


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe token for ``cursor`` (base64 of a checksummed JSON)."""
    key: Any = cursor.key.isoformat() if isinstance(cursor.key, datetime) else cursor.key
    body = json.dumps(
        {"e": cursor.entity, "o": str(cursor.order), "k": key, "i": cursor.id},
        separators=(",", ":"),
        sort_keys=True,
    )
    token = f"{_checksum(body)}{body}".encode()
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode_cursor(token: str, entity: Entity, order: Order) -> Cursor:
    """Read a token made by :func:`encode_cursor` for the same ``entity`` and ``order``.

    Raises:
        InvalidFilter: the token is damaged, edited, or was made for another
            listing or order.
    """
    bad = InvalidFilter("invalid cursor: pass back the cursor of the previous page unchanged")
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        check, body = raw[:12], raw[12:]
        if check != _checksum(body):
            raise bad
        data = json.loads(body)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if not isinstance(data, dict) or set(data) != {"e", "o", "k", "i"}:
        raise bad
    if data["e"] != entity or data["o"] != str(order):
        raise InvalidFilter(
            f"this cursor belongs to a {data['e']} listing ordered by {data['o']!r}, "
            f"not to a {entity} listing ordered by {str(order)!r}"
        )
    row_id, key = data["i"], data["k"]
    if not isinstance(row_id, int) or isinstance(row_id, bool) or not 0 < row_id <= MAX_ID:
        raise bad  # the checksum is no signature: a client can write any cursor
    value: CursorKey
    if order.field in ("created_at", "updated_at"):
        if not isinstance(key, str):
            raise bad
        try:
            value = as_utc(datetime.fromisoformat(key))
        except ValueError:
            raise bad from None
    elif order.field == "version":
        if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= MAX_VERSION_INDEX:
            raise bad
        value = key
    else:
        if not isinstance(key, str):
            raise bad
        value = key
    return Cursor(entity, order, value, row_id)


def _checksum(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:12]
