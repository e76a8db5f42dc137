"""Read models: everything a version or collection view needs, in few Core queries.

These are on the hot path of every link, alias move and resolve, so they are
plain SQL (no ORM instances) built once, with expanding ``IN`` parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Row, bindparam, literal, select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from regalia.store.models import (
    Alias,
    Collection,
    CollectionTag,
    Membership,
    Project,
    ProtectedAliasName,
    Registry,
    Run,
    User,
    Version,
    VersionTag,
)

_Seq = aliased(Collection, name="seq")
_SeqProject = aliased(Project, name="seq_project")
_CollProject = aliased(Project, name="coll_project")

_COLLECTION_COLUMNS = (
    Collection.id.label("cid"),
    Collection.kind.label("ckind"),
    Collection.name.label("cname"),
    Collection.type.label("ctype"),
    Collection.description.label("cdescription"),
    Collection.member_count.label("cmembers"),
    Collection.registry_id.label("cregistry_id"),
    Collection.created_at.label("ccreated_at"),
    Collection.updated_at.label("cupdated_at"),
    Registry.name.label("rname"),
    _CollProject.entity.label("centity"),
    _CollProject.name.label("cproject"),
)

_VERSION_ROWS = (
    select(
        Membership.id.label("mid"),
        Membership.version_index.label("mindex"),
        Version.id.label("vid"),
        Version.version_index.label("vindex"),
        Version.digest,
        Version.size,
        Version.file_count,
        Version.description,
        Version.metadata_.label("metadata"),
        Version.created_at,
        Version.updated_at,
        _Seq.name.label("seq_name"),
        _Seq.type.label("seq_type"),
        _SeqProject.entity.label("seq_entity"),
        _SeqProject.name.label("seq_project"),
        User.name.label("creator"),
        Run.run_key,
        *_COLLECTION_COLUMNS,
    )
    .select_from(Membership)
    .join(Version, Version.id == Membership.version_id)
    .join(_Seq, _Seq.id == Version.sequence_id)
    .join(_SeqProject, _SeqProject.id == _Seq.project_id)
    .join(Collection, Collection.id == Membership.collection_id)
    .outerjoin(Registry, Registry.id == Collection.registry_id)
    .outerjoin(_CollProject, _CollProject.id == Collection.project_id)
    .outerjoin(User, User.id == Version.created_by)
    .outerjoin(Run, Run.id == Version.run_id)
    .where(Membership.id.in_(bindparam("ids", expanding=True)))
)

_COLLECTION_ROWS = (
    select(*_COLLECTION_COLUMNS)
    .select_from(Collection)
    .outerjoin(Registry, Registry.id == Collection.registry_id)
    .outerjoin(_CollProject, _CollProject.id == Collection.project_id)
    .where(Collection.id.in_(bindparam("ids", expanding=True)))
)

_ALIASES = (
    select(Alias.membership_id, Alias.name)
    .where(Alias.membership_id.in_(bindparam("ids", expanding=True)))
    .order_by(Alias.id)
)
_VERSION_TAGS = (
    select(VersionTag.version_id, VersionTag.tag)
    .where(VersionTag.version_id.in_(bindparam("ids", expanding=True)))
    .order_by(VersionTag.tag)
)
_COLLECTION_TAGS = (
    select(CollectionTag.collection_id, CollectionTag.tag)
    .where(CollectionTag.collection_id.in_(bindparam("ids", expanding=True)))
    .order_by(CollectionTag.tag)
)
_PROTECTED = select(ProtectedAliasName.registry_id, ProtectedAliasName.name_key).where(
    ProtectedAliasName.registry_id.in_(bindparam("ids", expanding=True))
)


# The four lists a version view needs besides its row, in one round trip:
# (kind, owner id, value, order) with kind a(lias)/v(ersion tag)/c(ollection
# tag)/p(rotected alias key); aliases keep their order of addition.
_VERSION_EXTRAS = union_all(
    select(literal("a"), Alias.membership_id, Alias.name, Alias.id).where(
        Alias.membership_id.in_(bindparam("mids", expanding=True))
    ),
    select(literal("v"), VersionTag.version_id, VersionTag.tag, literal(0)).where(
        VersionTag.version_id.in_(bindparam("vids", expanding=True))
    ),
    select(literal("c"), CollectionTag.collection_id, CollectionTag.tag, literal(0)).where(
        CollectionTag.collection_id.in_(bindparam("cids", expanding=True))
    ),
    select(
        literal("p"), ProtectedAliasName.registry_id, ProtectedAliasName.name_key, literal(0)
    ).where(ProtectedAliasName.registry_id.in_(bindparam("rids", expanding=True))),
)


class VersionExtras:
    """Aliases per membership, tags per version and per collection, protected
    alias keys per registry: every id asked for has an entry."""

    def __init__(
        self,
        conn: Connection,
        mids: Iterable[int],
        vids: Iterable[int],
        cids: Iterable[int],
        rids: Iterable[int],
    ) -> None:
        keys = {k: list(dict.fromkeys(ids)) for k, ids in
                (("a", mids), ("v", vids), ("c", cids), ("p", rids))}  # fmt: skip
        found: dict[str, dict[int, list[tuple[Any, str]]]] = {
            k: {i: [] for i in ids} for k, ids in keys.items()
        }
        params = {"mids": keys["a"], "vids": keys["v"], "cids": keys["c"], "rids": keys["p"]}
        for kind, owner, value, order in conn.execute(_VERSION_EXTRAS, params):
            found[kind][owner].append((order if kind == "a" else value, value))
        sort = {k: {i: [v for _o, v in sorted(rows)] for i, rows in d.items()}
                for k, d in found.items()}  # fmt: skip
        self.aliases = sort["a"]
        self.version_tags = sort["v"]
        self.collection_tags = sort["c"]
        self.protected = {i: set(v) for i, v in sort["p"].items()}


def version_rows(conn: Connection, membership_ids: Sequence[int]) -> dict[int, Row[Any]]:
    """One row per membership with its version, source, collection and registry."""
    return {row.mid: row for row in conn.execute(_VERSION_ROWS, {"ids": list(membership_ids)})}


def collection_rows(conn: Connection, collection_ids: Sequence[int]) -> dict[int, Row[Any]]:
    rows: list[Row[Any]] = list(conn.execute(_COLLECTION_ROWS, {"ids": list(collection_ids)}))
    return {row.cid: row for row in rows}


def _grouped(conn: Connection, stmt: Any, ids: Iterable[int]) -> dict[int, list[str]]:
    keys = list(dict.fromkeys(ids))
    out: dict[int, list[str]] = {i: [] for i in keys}
    if keys:
        for key, value in conn.execute(stmt, {"ids": keys}):
            out[key].append(value)
    return out


def aliases_of(conn: Connection, membership_ids: Iterable[int]) -> dict[int, list[str]]:
    return _grouped(conn, _ALIASES, membership_ids)


def version_tags(conn: Connection, version_ids: Iterable[int]) -> dict[int, list[str]]:
    return _grouped(conn, _VERSION_TAGS, version_ids)


def collection_tags(conn: Connection, collection_ids: Iterable[int]) -> dict[int, list[str]]:
    return _grouped(conn, _COLLECTION_TAGS, collection_ids)


def protected_keys(conn: Connection, registry_ids: Iterable[int]) -> dict[int, set[str]]:
    return {k: set(v) for k, v in _grouped(conn, _PROTECTED, registry_ids).items()}
