"""Prebuilt SQL statements for the repository's hot paths, and read-only records.

Built once at import: executing a prebuilt statement skips SQLAlchemy's
statement construction and cache-key work, which dominated link and alias
changes. Rows come back as :class:`Record` copies, not ORM instances.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Boolean,
    Integer,
    and_,
    bindparam,
    exists,
    func,
    insert,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from regalia.store.models import (
    Alias,
    ApiKey,
    Blob,
    BlobGrant,
    Collection,
    IdempotencyKey,
    Membership,
    Project,
    Registry,
    RegistryMember,
    Version,
    VersionFile,
    WebSession,
)

ALIAS_ROW = (
    select(Alias.id, Alias.membership_id, Alias.name, Membership.version_index)
    .join(Membership, Membership.id == Alias.membership_id)
    .where(Alias.collection_id == bindparam("cid"), Alias.name_key == bindparam("key"))
)
MOVE_ALIAS = (
    update(Alias)
    .where(Alias.id == bindparam("aid"))
    .values(membership_id=bindparam("mid"), name=bindparam("name"), updated_at=bindparam("when"))
)
ALLOCATE = (
    update(Collection)
    .where(Collection.id == bindparam("cid"))
    .values(
        next_index=Collection.next_index + 1,
        member_count=Collection.member_count + 1,
        updated_at=bindparam("when"),
    )
    .returning(Collection.next_index)
)


def columns(model: Any, prefix: str = "") -> list[Any]:
    """Every mapped column of ``model``, labelled ``prefix + attribute name``."""
    return [getattr(model, a.key).label(prefix + a.key) for a in inspect(model).mapper.column_attrs]


class Record(SimpleNamespace):
    """A read-only copy of a row, with the mapped class's attribute names: cheaper than
    an ORM instance on the hot paths, and never written back by the session."""


def detached(model: Any, data: Any, prefix: str = "") -> Any:
    """A :class:`Record` of ``model``'s attributes from a row's ``prefix``-labelled columns."""
    return Record(**{a.key: data[prefix + a.key] for a in inspect(model).mapper.column_attrs})


REGISTRY_BY_NAME = select(*columns(Registry)).where(
    Registry.org_id == bindparam("org"), Registry.name_key == bindparam("key")
)
GRANTS = select(RegistryMember.registry_id, RegistryMember.role).where(
    RegistryMember.registry_id.in_(bindparam("rids", expanding=True)),
    or_(
        RegistryMember.user_id == bindparam("uid"),
        RegistryMember.team_id.in_(bindparam("tids", expanding=True)),
    ),
)
INSERT_MEMBERSHIP = insert(Membership).returning(Membership.id)
IDEMPOTENT_RESULT = select(IdempotencyKey.operation, IdempotencyKey.membership_id).where(
    IdempotencyKey.user_id == bindparam("uid"), IdempotencyKey.key == bindparam("key")
)
RECORD_IDEMPOTENT = insert(IdempotencyKey)


CONTEXT = (
    select(
        *columns(Membership, "m_"),
        *columns(Collection, "c_"),
        *columns(Registry, "r_"),
        *columns(Project, "p_"),
    )
    .select_from(Membership)
    .join(Collection, Collection.id == Membership.collection_id)
    .outerjoin(Registry, Registry.id == Collection.registry_id)
    .outerjoin(Project, Project.id == Collection.project_id)
    .where(Membership.id == bindparam("mid"))
)
FIND_PORTFOLIO = select(*columns(Collection)).where(
    Collection.registry_id == bindparam("owner"), Collection.name_key == bindparam("key")
)
FIND_SEQUENCE = select(*columns(Collection)).where(
    Collection.project_id == bindparam("owner"), Collection.name_key == bindparam("key")
)
COLLECTION_BY_ID = select(*columns(Collection)).where(Collection.id == bindparam("cid"))
MEMBERSHIP_OF_VERSION = select(*columns(Membership)).where(
    Membership.collection_id == bindparam("cid"), Membership.version_id == bindparam("vid")
)
MEMBERSHIP_BY_INDEX = select(*columns(Membership)).where(
    Membership.collection_id == bindparam("cid"), Membership.version_index == bindparam("idx")
)
# A registry path in one query: the registry (if it exists), whether the collection
# exists, and the membership the alias or index names (if any).
_PATH_COLLECTION = aliased(Collection, name="path_coll")
_PATH_MEMBER = aliased(Membership, name="path_member")
_PATH_BASE = (
    select(
        *columns(Registry), _PATH_COLLECTION.id.label("path_cid"), _PATH_MEMBER.id.label("path_mid")
    )
    .select_from(Registry)
    .outerjoin(
        _PATH_COLLECTION,
        (_PATH_COLLECTION.registry_id == Registry.id)
        & (_PATH_COLLECTION.name_key == bindparam("ckey")),
    )
    .where(Registry.org_id == bindparam("org"), Registry.name_key == bindparam("rkey"))
)
REGISTRY_PATH_BY_ALIAS = _PATH_BASE.outerjoin(
    Alias,
    (Alias.collection_id == _PATH_COLLECTION.id) & (Alias.name_key == bindparam("ref")),
).outerjoin(_PATH_MEMBER, _PATH_MEMBER.id == Alias.membership_id)
REGISTRY_PATH_BY_INDEX = _PATH_BASE.outerjoin(
    _PATH_MEMBER,
    (_PATH_MEMBER.collection_id == _PATH_COLLECTION.id)
    & (_PATH_MEMBER.version_index == bindparam("ref")),
)
MEMBERSHIP_BY_ALIAS = (
    select(*columns(Membership))
    .join(Alias, Alias.membership_id == Membership.id)
    .where(Alias.collection_id == bindparam("cid"), Alias.name_key == bindparam("key"))
)
SEQ = aliased(Collection, name="src_seq")
VERSION_SOURCE = (
    select(*columns(Version, "v_"), *columns(SEQ, "s_"))
    .join(SEQ, SEQ.id == Version.sequence_id)
    .where(Version.id == bindparam("vid"))
)


# The user of a live web UI session (on every page): the session's primary key,
# joined to its API key so a revoked key ends it.
WEB_SESSION_USER = (
    select(ApiKey.user_id)
    .select_from(WebSession)
    .join(ApiKey, ApiKey.id == WebSession.api_key_id)
    .where(
        WebSession.token_hash == bindparam("token"),
        WebSession.expires_at > bindparam("now"),
        ApiKey.revoked_at.is_(None),
    )
)


# -- content access (SPEC §7) ---------------------------------------------------------------
GRANTED = select(BlobGrant.digest).where(
    BlobGrant.user_id == bindparam("uid"),
    BlobGrant.digest.in_(bindparam("digests", expanding=True)),
    BlobGrant.granted_at >= bindparam("since"),
)


def _downloadable() -> Any:
    """Of the digests ``:digests``, those the org ``:org``'s blob rows hold (primary
    key) that one of the first ``:scan`` versions referencing them (index on
    ``version_files.digest``) lets the user ``:uid`` download: a bounded ``EXISTS``
    that stops at the first such version. Who may download what is decided by the
    caller through ``:everything`` (org admin), ``:entities`` (source artifacts of
    these lower-case entity names), ``:roles`` held by ``:uid`` or ``:tids`` in a
    registry, and ``:org_visible`` (every registry of visibility ``organization``)."""
    m, c = Membership, Collection
    via_source = and_(
        c.kind == "sequence",
        exists().where(
            Project.id == c.project_id,
            func.lower(Project.entity).in_(bindparam("entities", expanding=True)),
        ),
    )
    via_member = exists().where(
        RegistryMember.registry_id == c.registry_id,
        RegistryMember.role.in_(bindparam("roles", expanding=True)),
        or_(
            RegistryMember.user_id == bindparam("uid"),
            RegistryMember.team_id.in_(bindparam("tids", expanding=True)),
        ),
    )
    via_org = and_(
        bindparam("org_visible", type_=Boolean),
        exists().where(Registry.id == c.registry_id, Registry.visibility == "organization"),
    )
    allowed = or_(
        bindparam("everything", type_=Boolean),
        via_source,
        and_(c.kind == "portfolio", or_(via_member, via_org)),
    )
    first_holders = (
        select(VersionFile.version_id)
        .where(VersionFile.digest == Blob.digest)
        .limit(bindparam("scan", type_=Integer))
        .correlate(Blob)  # the outer query's blob row, two levels up
        .scalar_subquery()
    )
    held = (
        select(m.id)
        .join(c, c.id == m.collection_id)
        .where(m.version_id.in_(first_holders), c.org_id == bindparam("org"), allowed)
        .exists()
    )
    return select(Blob.digest).where(
        Blob.org_id == bindparam("org"),
        Blob.digest.in_(bindparam("digests", expanding=True)),
        held,
    )


DOWNLOADABLE = _downloadable()
