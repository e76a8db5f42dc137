"""Listings with W&B's Mongo-style filters, evaluated in SQL, one page at a time."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from regalia.core.filters import Node
from regalia.core.search import like_escape, prefix_bounds
from regalia.errors import InvalidFilter
from regalia.store.filters import Page, collection_where, paginate, registry_where, version_where
from regalia.store.models import (
    Alias,
    Collection,
    CollectionTag,
    Membership,
    Registry,
    Version,
    VersionTag,
)
from regalia.store.repo import Repo


def _run(session: Session, query) -> Page:  # type: ignore[no-untyped-def]
    try:
        with session.begin_nested():
            page: Page = query.read(session.execute(query.stmt))
            return page
    except sa_exc.DataError as exc:
        # A regular expression Python accepted but the database rejected.
        raise InvalidFilter(
            f"the database rejected the filter: {str(exc.orig).splitlines()[0]}"
        ) from None


def find_registries(
    repo: Repo,
    registry_ids: Sequence[int],
    node: Node,
    *,
    order: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Registry], str | None]:
    stmt = select(Registry).where(Registry.id.in_(list(registry_ids)), registry_where(node))
    page = _run(repo.s, paginate(stmt, entity="registry", order=order, cursor=cursor, limit=limit))
    return [row[0] for row in page.items], page.next_cursor


def find_collections(
    repo: Repo,
    registry_ids: Sequence[int],
    registry_node: Node,
    node: Node,
    *,
    order: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Collection], str | None]:
    stmt = (
        select(Collection)
        .join(Registry, Registry.id == Collection.registry_id)
        .where(
            Collection.kind == "portfolio",
            Registry.id.in_(list(registry_ids)),
            registry_where(registry_node),
            collection_where(node),
        )
    )
    page = _run(
        repo.s, paginate(stmt, entity="collection", order=order, cursor=cursor, limit=limit)
    )
    return [row[0] for row in page.items], page.next_cursor


def find_versions(
    repo: Repo,
    registry_ids: Sequence[int],
    registry_node: Node,
    collection_node: Node,
    node: Node,
    *,
    order: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Membership], str | None]:
    stmt = (
        select(Membership)
        .join(Version, Version.id == Membership.version_id)
        .join(Collection, Collection.id == Membership.collection_id)
        .join(Registry, Registry.id == Collection.registry_id)
        .where(
            Collection.kind == "portfolio",
            Registry.id.in_(list(registry_ids)),
            registry_where(registry_node),
            collection_where(collection_node),
            version_where(node),
        )
    )
    page = _run(repo.s, paginate(stmt, entity="version", order=order, cursor=cursor, limit=limit))
    return [row[0] for row in page.items], page.next_cursor


# -- the global search box (SPEC §6) ---------------------------------------------------------
# Tags and descriptions are looked up in their index first, then their registry
# links: this many candidates per result wanted (links the caller may not see
# are dropped after, so a page can come back short when most matches are hidden).
CANDIDATES = 5


def _newest_links(
    repo: Repo, version_ids: Sequence[int], registry_ids: Sequence[int], limit: int
) -> list[tuple[int, int]]:
    """(membership id, version id) of those versions' links into those registries,
    newest first. Sorted here, not by ORDER BY: with ORDER BY id LIMIT,
    PostgreSQL walks every membership backwards by id looking for these versions
    (0.7 s at 100,000 versions) instead of using their version_id index."""
    links = repo.s.execute(
        select(Membership.id, Membership.version_id)
        .join(Collection, Collection.id == Membership.collection_id)
        .where(
            Membership.version_id.in_(list(version_ids)),
            Collection.registry_id.in_(list(registry_ids)),
        )
    ).all()
    return [(m_id, v_id) for m_id, v_id in sorted(links, reverse=True)[:limit]]


def aliases_starting(
    repo: Repo, registry_ids: Sequence[int], prefix: str, limit: int
) -> list[tuple[int, str]]:
    """(membership id, alias) of aliases in those registries that start with ``prefix``."""
    low, high = prefix_bounds(prefix)
    rows = repo.s.execute(
        select(Alias.membership_id, Alias.name)
        .join(Collection, Collection.id == Alias.collection_id)
        .where(
            Alias.name_key >= low,
            Alias.name_key < high,
            Alias.name_key.like(like_escape(prefix) + "%", escape="\\"),
            Collection.registry_id.in_(list(registry_ids)),
        )
        .order_by(Alias.updated_at.desc())
        .limit(limit)
    ).all()
    return [(r[0], r[1]) for r in rows]


def tags_starting(
    repo: Repo, registry_ids: Sequence[int], prefix: str, limit: int
) -> list[tuple[int, str]]:
    """(membership id, tag) of registry versions with a tag starting with ``prefix``.

    Two steps, so that the tag index leads (a join lets the planner start from
    the registries' memberships instead, and read all of them): the first
    ``limit * CANDIDATES`` tags in the prefix's range, then their registry links."""
    low, high = prefix_bounds(prefix)
    key = func.lower(VersionTag.tag)
    tagged = repo.s.execute(
        select(VersionTag.version_id, VersionTag.tag)
        .where(key >= low, key < high, key.like(like_escape(prefix) + "%", escape="\\"))
        .order_by(VersionTag.version_id.desc())
        .limit(limit * CANDIDATES)
    ).all()
    if not tagged:
        return []
    tags: dict[int, str] = {}
    for version_id, tag in tagged:
        tags.setdefault(version_id, tag)
    return [
        (m_id, tags[v_id]) for m_id, v_id in _newest_links(repo, list(tags), registry_ids, limit)
    ]


def versions_described(
    repo: Repo, registry_ids: Sequence[int], terms: Sequence[str], limit: int
) -> list[int]:
    """Membership ids of registry versions, newest first, whose description has
    words starting with each of ``terms`` (FTS5 on SQLite, the GIN index on
    PostgreSQL; ``terms`` are letters and digits only, see core/search.py)."""
    if repo.dialect == "sqlite":
        match = " AND ".join(f'"{t}"*' for t in terms)
        ids = list(
            repo.s.scalars(
                text(
                    "SELECT rowid FROM version_fts WHERE version_fts MATCH :q "
                    "ORDER BY rowid DESC LIMIT :n"
                ),  # fmt: skip
                {"q": match, "n": limit * CANDIDATES},
            )
        )
    else:
        query = " & ".join(f"{t}:*" for t in terms)
        ids = list(
            repo.s.scalars(
                select(Version.id)
                .where(
                    text(
                        "to_tsvector('simple', versions.description) @@ to_tsquery('simple', :q)"
                    ).bindparams(q=query)
                )  # fmt: skip
                .limit(limit * CANDIDATES)  # no ORDER BY: a common word would sort every match
            )
        )
    if not ids:
        return []
    return [m_id for m_id, _ in _newest_links(repo, ids, registry_ids, limit)]


def collections_containing(
    repo: Repo, registry_ids: Sequence[int], term: str, limit: int
) -> list[Collection]:
    """Registry collections whose name, description or a tag contains ``term``
    (the caller keeps those that match by word prefix)."""
    pattern = "%" + like_escape(term) + "%"
    tagged = select(CollectionTag.collection_id).where(
        func.lower(CollectionTag.tag).like(pattern, escape="\\")
    )
    return list(
        repo.s.scalars(
            select(Collection)
            .where(
                Collection.kind == "portfolio",
                Collection.registry_id.in_(list(registry_ids)),
                or_(
                    Collection.name_key.like(pattern, escape="\\"),
                    func.lower(Collection.description).like(pattern, escape="\\"),
                    Collection.id.in_(tagged),
                ),
            )
            .order_by(Collection.updated_at.desc())
            .limit(limit)
        )
    )
