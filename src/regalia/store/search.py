"""Listings with W&B's Mongo-style filters, evaluated in SQL, one page at a time."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session

from regalia.core.filters import Node
from regalia.errors import InvalidFilter
from regalia.store.filters import Page, collection_where, paginate, registry_where, version_where
from regalia.store.models import Collection, Membership, Registry, Version
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
