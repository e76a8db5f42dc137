"""Listings: registries -> collections -> versions, filtered in SQL (SPEC §6)."""

from __future__ import annotations

from typing import Any

from regalia.core.filters import parse_filter
from regalia.service.access import effective_roles
from regalia.service.base import ServiceBase
from regalia.service.views import Actor, Page
from regalia.store import search
from regalia.store.repo import Repo

Filter = dict[str, Any] | None


class SearchMixin(ServiceBase):
    def _visible_ids(self, repo: Repo, actor: Actor) -> list[int]:
        regs = repo.registries(actor.org_id)
        roles = effective_roles(repo, actor, regs)
        return [r.id for r in regs if roles[r.id] is not None]

    def find_registries(
        self,
        actor: Actor,
        *,
        filter: Filter = None,
        order: str | None = "name",
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """Registries the caller may see that match ``filter``."""
        node = parse_filter(filter, "registry")

        def fn(repo: Repo) -> Page:
            rows, nxt = search.find_registries(
                repo,
                self._visible_ids(repo, actor),
                node,
                order=order,
                cursor=cursor,
                limit=limit,
            )
            return Page(self._registry_views(repo, actor, rows), nxt)

        return self.db.read(fn)

    def find_collections(
        self,
        actor: Actor,
        *,
        registry_filter: Filter = None,
        filter: Filter = None,
        order: str | None = "name",
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """Collections of the visible registries matching ``registry_filter`` that match
        ``filter``."""
        reg_node = parse_filter(registry_filter, "registry")
        node = parse_filter(filter, "collection")

        def fn(repo: Repo) -> Page:
            rows, nxt = search.find_collections(
                repo,
                self._visible_ids(repo, actor),
                reg_node,
                node,
                order=order,
                cursor=cursor,
                limit=limit,
            )
            return Page(self._collection_views(repo, rows), nxt)

        return self.db.read(fn)

    def find_versions(
        self,
        actor: Actor,
        *,
        registry_filter: Filter = None,
        collection_filter: Filter = None,
        filter: Filter = None,
        order: str | None = "-created_at",
        cursor: str | None = None,
        limit: int = 100,
    ) -> Page:
        """Linked versions, narrowed by registry, collection and version filters."""
        reg_node = parse_filter(registry_filter, "registry")
        coll_node = parse_filter(collection_filter, "collection")
        node = parse_filter(filter, "version")

        def fn(repo: Repo) -> Page:
            rows, nxt = search.find_versions(
                repo,
                self._visible_ids(repo, actor),
                reg_node,
                coll_node,
                node,
                order=order,
                cursor=cursor,
                limit=limit,
            )
            return Page(self._version_views(repo, rows), nxt)

        return self.db.read(fn)
