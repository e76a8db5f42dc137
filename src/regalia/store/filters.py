"""Filters, orderings and cursor pages in SQL, the same on SQLite and PostgreSQL.

:mod:`regalia.core.filters` parses a Mongo-style filter into a tree; this
module turns the tree into a SQLAlchemy boolean expression and pages results
with keyset ("seek") pagination.

Which tables a statement must have in its FROM list:

* :func:`registry_where`: ``Registry``;
* :func:`collection_where`: ``Collection`` (the portfolio);
* :func:`version_where`: ``Membership``, ``Version``, ``Collection`` and
  ``Registry``, joined as a linked version is::

    select(Membership, Version, Collection, Registry)
    .join(Version, Version.id == Membership.version_id)
    .join(Collection, Collection.id == Membership.collection_id)
    .join(Registry, Registry.id == Collection.registry_id)

For a linked version, ``name`` (or ``collection``) is the collection's name,
``registry`` the registry's, ``version`` the index in the collection, ``type``
the collection's type, and ``description``, ``metadata.*``, ``tag``,
``created_at`` and ``updated_at`` are the source version's (R8); ``alias``
is an alias of that membership.

Every expression is two-valued (never SQL NULL), so ``$not`` and ``$nin`` work
as negations on both databases. Text order (``$gt`` on strings, ``order="name"``)
is bytewise: PostgreSQL compares with ``COLLATE "C"``, like SQLite does.

A typical listing::

    node = parse_filter({"tag": "prod", "metadata.accuracy": {"$gte": 0.9}}, "version")
    query = paginate(
        base.where(version_where(node)),   # base: the select above + visibility checks
        entity="version", order="-version", cursor=cursor, limit=20,
    )
    page = query.read(session.execute(query.stmt))
    for membership, version, collection, registry in page.items: ...
    page.next_cursor  # None on the last page
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Select,
    SQLColumnExpression,
    String,
    and_,
    bindparam,
    case,
    exists,
    false,
    not_,
    or_,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from regalia.core.filters import (
    FIELDS,
    And,
    Compare,
    Cursor,
    CursorKey,
    Entity,
    Exists,
    Node,
    Not,
    Or,
    Order,
    Scalar,
    as_utc,
    decode_cursor,
    encode_cursor,
    parse_order,
)
from regalia.core.names import name_key
from regalia.errors import InvalidFilter
from regalia.store.models import (
    Alias,
    Collection,
    CollectionTag,
    Membership,
    Registry,
    Version,
    VersionTag,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Page",
    "PageQuery",
    "collection_where",
    "next_cursor",
    "paginate",
    "registry_where",
    "version_where",
    "where",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

Predicate = ColumnElement[bool]
Column = SQLColumnExpression[Any]

_OPERATORS: dict[str, Callable[[Any, Any], Predicate]] = {
    "$eq": operator.eq,
    "$ne": operator.ne,
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


# -- dialect-specific pieces --------------------------------------------------------


class _Bytewise(FunctionElement[str]):
    """A text expression compared and sorted byte by byte (SQLite's default)."""

    type = String()
    inherit_cache = True


@compiles(_Bytewise)
def _bytewise_default(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(_Bytewise, "postgresql")
def _bytewise_postgresql(element: _Bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)}) COLLATE "C"'


class _JsonTest(FunctionElement[bool]):
    """Is the JSON value at a key path of one type? True or false, never NULL.

    Built from the column and a path bind parameter (so statement caching sees
    the path as a parameter); subclasses name the types per database.
    """

    type = Boolean()
    inherit_cache = True
    sqlite_types: ClassVar[tuple[str, ...]] = ()
    postgresql_type: ClassVar[str] = ""

    def __init__(self, column: Column, key: tuple[str, ...]) -> None:
        super().__init__(column, bindparam(None, key, type_=JSON.JSONPathType()))


class _JsonIsNumber(_JsonTest):
    inherit_cache = True
    sqlite_types = ("integer", "real")
    postgresql_type = "number"


class _JsonIsString(_JsonTest):
    inherit_cache = True
    sqlite_types = ("text",)
    postgresql_type = "string"


class _JsonIsBoolean(_JsonTest):
    inherit_cache = True
    sqlite_types = ("true", "false")
    postgresql_type = "boolean"


class _JsonIsNull(_JsonTest):
    inherit_cache = True
    sqlite_types = ("null",)
    postgresql_type = "null"


class _JsonHasKey(_JsonTest):
    """The key path exists (its value may be JSON null)."""

    inherit_cache = True


def _json_parts(element: _JsonTest, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    column, path = element.clauses.clauses
    return compiler.process(column, **kw), compiler.process(path, **kw)


def _json_test_sqlite(element: _JsonTest, compiler: SQLCompiler, **kw: Any) -> str:
    column, path = _json_parts(element, compiler, **kw)
    if isinstance(element, _JsonHasKey):
        return f"(json_type({column}, {path}) IS NOT NULL)"
    types = ", ".join(f"'{t}'" for t in element.sqlite_types)
    return f"(coalesce(json_type({column}, {path}), '') IN ({types}))"


def _json_test_postgresql(element: _JsonTest, compiler: SQLCompiler, **kw: Any) -> str:
    column, path = _json_parts(element, compiler, **kw)
    if isinstance(element, _JsonHasKey):
        return f"(({column} #> {path}) IS NOT NULL)"
    typeof = "jsonb_typeof" if isinstance(element.clauses.clauses[0].type, JSONB) else "json_typeof"
    return f"(coalesce({typeof}({column} #> {path}), '') = '{element.postgresql_type}')"


def _json_test_other(element: _JsonTest, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError("metadata filters need SQLite or PostgreSQL")


for _cls in (_JsonIsNumber, _JsonIsString, _JsonIsBoolean, _JsonIsNull, _JsonHasKey):
    compiles(_cls)(_json_test_other)
    compiles(_cls, "sqlite")(_json_test_sqlite)
    compiles(_cls, "postgresql")(_json_test_postgresql)


# -- where clauses ------------------------------------------------------------------


def registry_where(node: Node) -> Predicate:
    """``node`` (parsed for ``"registry"``) as a condition on ``Registry``."""
    return where(node, "registry")


def collection_where(node: Node) -> Predicate:
    """``node`` (parsed for ``"collection"``) as a condition on a portfolio ``Collection``."""
    return where(node, "collection")


def version_where(node: Node) -> Predicate:
    """``node`` (parsed for ``"version"``) as a condition on a linked version.

    The statement must join ``Membership``, ``Version``, ``Collection`` and
    ``Registry`` (see the module docstring).
    """
    return where(node, "version")


def where(node: Node, entity: Entity) -> Predicate:
    """``node`` as a SQL condition for ``entity``; a field the entity lacks is InvalidFilter."""
    if isinstance(node, And):
        return and_(true(), *(where(item, entity) for item in node.items))
    if isinstance(node, Or):
        return or_(false(), *(where(item, entity) for item in node.items))
    if isinstance(node, Not):
        return not_(where(node.item, entity))
    if node.field == "metadata" and entity == "version":
        return _metadata(node)
    if node.field == "tag" and entity in ("collection", "version"):
        return _tag(node, entity)
    if node.field == "alias" and entity == "version":
        return _alias(node)
    column = _COLUMNS[entity].get(node.field)
    if column is None:
        raise InvalidFilter(f"unknown field '{node.field}' for {entity} filters")
    if isinstance(node, Exists):
        return true() if node.exists else false()  # these columns are never NULL
    if FIELDS[entity][node.field] == "text":
        return _compare(node, column, bytewise=_Bytewise(column))
    return _compare(node, column)


_COLUMNS: dict[Entity, dict[str, Column]] = {
    "registry": {
        "name": Registry.name,
        "description": Registry.description,
        "visibility": Registry.visibility,
        "created_at": Registry.created_at,
        "updated_at": Registry.updated_at,
    },
    "collection": {
        "name": Collection.name,
        "description": Collection.description,
        "type": Collection.type,
        "created_at": Collection.created_at,
        "updated_at": Collection.updated_at,
    },
    "version": {
        "name": Collection.name,
        "registry": Registry.name,
        "description": Version.description,
        "type": Collection.type,
        "version": Membership.version_index,
        "created_at": Version.created_at,
        "updated_at": Version.updated_at,
    },
}


def _compare(
    node: Compare,
    column: Column,
    *,
    bytewise: ColumnElement[Any] | None = None,
    fold: Callable[[Any], Any] = lambda value: value,
) -> Predicate:
    """``column op value`` for a never-NULL column; ``fold`` normalizes the operands."""
    op, value = node.op, node.value
    if op == "$regex":
        return column.regexp_match(_pattern(node))
    if op in ("$in", "$nin"):
        values = [fold(v) for v in value] if isinstance(value, tuple) else []
        return column.in_(values) if op == "$in" else column.not_in(values)
    if op in ("$eq", "$ne"):
        return _OPERATORS[op](column, fold(value))
    return _OPERATORS[op](column if bytewise is None else bytewise, fold(value))


def _pattern(node: Compare) -> str:
    # SQLite's REGEXP (RE2, registered in store/db.py) takes no flags argument;
    # a leading (?i) means "ignore case" to both RE2 and PostgreSQL. PostgreSQL
    # runs its own '~': the pattern was checked as RE2 syntax that it reads the
    # same way (no backreferences, which are what its engine backtracks on),
    # and statement_timeout bounds it.
    return f"(?i){node.value}" if node.ignore_case else str(node.value)


def _tag(node: Compare | Exists, entity: Entity) -> Predicate:
    if entity == "collection":
        tag, link = CollectionTag.tag, CollectionTag.collection_id == Collection.id
    else:
        tag, link = VersionTag.tag, VersionTag.version_id == Version.id
    return _any_row(node, tag, link, tag)


def _alias(node: Compare | Exists) -> Predicate:
    # Aliases are unique ignoring case (R5), so they also match ignoring case.
    link = Alias.membership_id == Membership.id
    if isinstance(node, Compare) and node.op == "$regex":
        node = Compare(node.field, node.op, node.value, node.key, ignore_case=True)
    return _any_row(node, Alias.name_key, link, Alias.name, fold=name_key)


def _any_row(
    node: Compare | Exists,
    column: Column,
    link: Predicate,
    regex_column: Column,
    *,
    fold: Callable[[Any], Any] = lambda value: value,
) -> Predicate:
    """Some linked row matches; ``$ne`` / ``$nin``: no linked row matches ``$eq`` / ``$in``."""
    if isinstance(node, Exists):
        found = exists().where(link)
        return found if node.exists else not_(found)
    negate = node.op in ("$ne", "$nin")
    positive = node
    if negate:
        positive = Compare(node.field, "$eq" if node.op == "$ne" else "$in", node.value)
    if positive.op == "$regex":
        condition = regex_column.regexp_match(_pattern(positive))
    else:
        condition = _compare(positive, column, bytewise=_Bytewise(column), fold=fold)
    found = exists().where(link, condition)
    return not_(found) if negate else found


def _metadata(node: Compare | Exists) -> Predicate:
    column, key = Version.metadata_, node.key
    if isinstance(node, Exists):
        has = _JsonHasKey(column, key)
        return has if node.exists else not_(has)
    if node.op in ("$ne", "$nin"):
        positive = Compare(node.field, "$eq" if node.op == "$ne" else "$in", node.value, key)
        return not_(_metadata(positive))
    if node.op == "$regex":
        is_string = _JsonIsString(column, key)
        text = case((is_string, column[key].as_string()))
        return and_(is_string, text.regexp_match(_pattern(node)))
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    matches = [_metadata_scalar(node.op, column, key, value) for value in values]
    return or_(false(), *matches)


def _metadata_scalar(op: str, column: Any, key: tuple[str, ...], value: Scalar) -> Predicate:
    """The JSON value at ``key`` is of ``value``'s type and ``op`` it (``$in`` means ``$eq``)."""
    if value is None:
        return or_(_JsonIsNull(column, key), not_(_JsonHasKey(column, key)))
    is_type: _JsonTest
    extracted: ColumnElement[Any]
    if isinstance(value, bool):
        is_type, extracted = _JsonIsBoolean(column, key), column[key].as_boolean()
    elif isinstance(value, int | float):
        # Compare as double precision on both sides; bind a float so that
        # PostgreSQL never casts a large int parameter to INTEGER.
        is_type, extracted, value = _JsonIsNumber(column, key), column[key].as_float(), float(value)
    elif isinstance(value, str):
        is_type, extracted = _JsonIsString(column, key), column[key].as_string()
    else:  # pragma: no cover - the parser only lets JSON scalars through
        raise InvalidFilter(f"cannot compare metadata with {type(value).__name__}")
    # The CASE keeps PostgreSQL from casting values of another type (an error there).
    guarded: ColumnElement[Any] = case((is_type, extracted))
    if op in ("$eq", "$in"):
        return and_(is_type, guarded == value)
    if isinstance(value, str):
        guarded = _Bytewise(guarded)
    return and_(is_type, _OPERATORS[op](guarded, value))


# -- ordering and pages ---------------------------------------------------------------


def _sort_columns(entity: Entity, field: str) -> tuple[Column, Column]:
    """The (sort key, unique id) pair that orders ``entity`` rows by ``field``."""
    if entity == "registry":
        table: Any = Registry
        row_id: Column = Registry.id
    elif entity == "collection":
        table, row_id = Collection, Collection.id
    else:
        row_id = Membership.id
        if field == "version":
            return Membership.version_index, row_id
        if field == "name":
            return _Bytewise(Collection.name_key), row_id
        return getattr(Version, field), row_id
    if field == "name":
        return _Bytewise(table.name_key), row_id  # names sort ignoring case
    return getattr(table, field), row_id


@dataclass(frozen=True)
class Page:
    """One page of rows and the cursor of the next page (``None`` on the last one)."""

    items: list[tuple[Any, ...]]
    next_cursor: str | None


@dataclass(frozen=True)
class PageQuery:
    """A statement that fetches one page, and how to read its result.

    ``stmt`` is the caller's statement with the cursor condition, ``ORDER BY``,
    ``LIMIT limit + 1`` and two extra trailing columns (``cursor_key``,
    ``cursor_id``) appended; :meth:`read` drops them again.
    """

    stmt: Select[Any]
    entity: Entity
    order: Order
    limit: int

    def read(self, rows: Iterable[Sequence[Any]]) -> Page:
        """Turn the result of ``session.execute(self.stmt)`` into a :class:`Page`.

        Each item is the row without the two cursor columns, e.g.
        ``(membership, version, collection, registry)``.
        """
        fetched = list(rows)
        more = len(fetched) > self.limit
        fetched = fetched[: self.limit]
        items = [tuple(row[:-2]) for row in fetched]
        cursor = None
        if more and fetched:
            last = fetched[-1]
            cursor = next_cursor(last[-2], last[-1], entity=self.entity, order=str(self.order))
        return Page(items, cursor)


def paginate(
    stmt: Select[Any],
    *,
    entity: Entity,
    order: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> PageQuery:
    """Order ``stmt``, seek past ``cursor`` and limit it to one page.

    Keyset pagination on (sort key, id): a page starts strictly after the last
    row of the previous one, so rows added or removed meanwhile never make a
    row appear twice or be skipped among those that stay.

    Args:
        stmt: a select with the FROM list the entity needs (see the module
            docstring), its filters applied, and no ORDER BY or LIMIT.
        entity: ``"registry"``, ``"collection"`` or ``"version"``.
        order: ``created_at``, ``updated_at``, ``name`` (ignoring case) and,
            for versions, ``version`` (the index); a leading ``-`` sorts
            descending. ``None`` means ``-created_at``. Ties are broken by id.
        cursor: ``next_cursor`` of the previous page, or ``None`` for the first.
        limit: page size, 1 to :data:`MAX_PAGE_SIZE`.

    Raises:
        InvalidFilter: an unknown order, a bad limit, or a cursor that is
            damaged or was made for another entity or order.

    Example::

        query = paginate(select(Registry).where(Registry.org_id == org_id),
                         entity="registry", order="name", cursor=None, limit=10)
        page = query.read(session.execute(query.stmt))
        registries = [registry for (registry,) in page.items]
    """
    ordering = parse_order(order, entity)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidFilter(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit!r}")
    sort_key, row_id = _sort_columns(entity, ordering.field)
    if cursor is not None:
        after = decode_cursor(cursor, entity, ordering)
        if ordering.descending:
            seek = or_(sort_key < after.key, and_(sort_key == after.key, row_id < after.id))
        else:
            seek = or_(sort_key > after.key, and_(sort_key == after.key, row_id > after.id))
        stmt = stmt.where(seek)
    if ordering.descending:
        stmt = stmt.order_by(sort_key.desc(), row_id.desc())
    else:
        stmt = stmt.order_by(sort_key.asc(), row_id.asc())
    stmt = stmt.add_columns(sort_key.label("cursor_key"), row_id.label("cursor_id"))
    return PageQuery(stmt.limit(limit + 1), entity, ordering, limit)


def next_cursor(key: CursorKey, row_id: int, *, entity: Entity, order: str | None) -> str:
    """The cursor of the page that starts after the row with sort value ``key`` and ``row_id``.

    ``key`` is the row's value of the order field: a datetime for
    ``created_at`` / ``updated_at``, the lower-cased name (``name_key``) for
    ``name``, the index for ``version``. :meth:`PageQuery.read` calls this for
    you; use it directly when you build pages yourself.
    """
    ordering = parse_order(order, entity)
    if isinstance(key, datetime):
        key = as_utc(key)  # SQLite hands back naive UTC datetimes
    return encode_cursor(Cursor(entity, ordering, key, int(row_id)))
