"""Listings: registries -> collections -> versions, filtered in SQL; and the
global search box (SPEC §6)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from regalia.core.filters import parse_filter
from regalia.core.names import name_key
from regalia.core.search import MAX_QUERY, matches, query_terms
from regalia.errors import InvalidRequest, QueryTooExpensive
from regalia.service.access import effective_roles
from regalia.service.base import ServiceBase
from regalia.service.views import Actor, Page, SearchResults, VersionHit
from regalia.store import search
from regalia.store.models import Registry
from regalia.store.repo import Repo

Filter = dict[str, Any] | None


@contextmanager
def _naming(what: str, advice: str) -> Iterator[None]:
    """A read past its time budget, told as the input that made it long."""
    try:
        yield
    except QueryTooExpensive as exc:
        seconds = exc.details.get("timeout_s")
        took = f"took longer than {seconds:g} s" if seconds is not None else "took too long"
        raise QueryTooExpensive(
            f"{what} {took} and was stopped: {advice}", **exc.details, input=what
        ) from None


def _filters_named(**filters: Filter) -> str:
    given = [name for name, value in filters.items() if value]
    if not given:
        return "the listing"
    return "the " + " and ".join(given)


_NARROW = (
    "narrow it (fewer clauses, a more specific pattern such as one anchored with '^', "
    "or a registry_filter / collection_filter that selects less)"
)


class SearchMixin(ServiceBase):
    def _visible(self, repo: Repo, actor: Actor) -> list[Registry]:
        """The registries the caller may see."""
        regs = repo.registries(actor.org_id)
        roles = effective_roles(repo, actor, regs)
        return [r for r in regs if roles[r.id] is not None]

    def _visible_ids(self, repo: Repo, actor: Actor) -> list[int]:
        return [r.id for r in self._visible(repo, actor)]

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

        with _naming(_filters_named(filter=filter), _NARROW):
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
        reg_node = parse_filter(registry_filter, "registry", name="registry_filter")
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

        with _naming(_filters_named(registry_filter=registry_filter, filter=filter), _NARROW):
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
        reg_node = parse_filter(registry_filter, "registry", name="registry_filter")
        coll_node = parse_filter(collection_filter, "collection", name="collection_filter")
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

        named = _filters_named(
            registry_filter=registry_filter, collection_filter=collection_filter, filter=filter
        )
        with _naming(named, _NARROW):
            return self.db.read(fn)

    def search(self, actor: Actor, query: str, *, limit: int = 20) -> SearchResults:
        """Registries, collections and versions matching ``query``, case-insensitively:
        registry names and descriptions, collection names, descriptions and tags
        by word prefix; version aliases and tags that start with the query (an
        index range scan each), and version descriptions by word prefix (the
        full-text index). ``limit`` per group."""
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit is 1 to 100")
        terms = query_terms(query)
        if not terms:
            return SearchResults(query, [], [], [])
        # Aliases and tags: the text as typed, compared as names are (NFKC, case folded).
        prefix = name_key(query.strip()[:MAX_QUERY])

        def fn(repo: Repo) -> SearchResults:
            visible = self._visible(repo, actor)
            ids = [r.id for r in visible]
            found_regs = [r for r in visible
                          if matches(r.name, terms) or matches(r.description, terms)]  # fmt: skip
            candidates = search.collections_containing(repo, ids, terms[0], limit * 10)
            ctags = repo.collection_tags(c.id for c in candidates)
            colls = [
                c for c in candidates
                if matches(c.name, terms) or matches(c.description, terms)
                or any(matches(t, terms) for t in ctags.get(c.id, []))
            ][:limit]  # fmt: skip
            # Versions: by alias, then tag, then description; each version once.
            hits: dict[int, tuple[str, str]] = {}
            for mid, alias in search.aliases_starting(repo, ids, prefix, limit):
                hits.setdefault(mid, ("alias", alias))
            for mid, tag in search.tags_starting(repo, ids, prefix, limit):
                hits.setdefault(mid, ("tag", tag))
            if len(hits) < limit:
                for mid in search.versions_described(repo, ids, terms, limit):
                    hits.setdefault(mid, ("description", ""))  # the text: from its view
            picked = list(hits.items())[:limit]
            views = {v.membership_id: v for v in
                     self._version_views_by_id(repo, [m for m, _ in picked])}  # fmt: skip
            versions = [
                VersionHit(views[m], field,
                           views[m].description[:120] if field == "description" else value)
                for m, (field, value) in picked if m in views
            ]  # fmt: skip
            return SearchResults(
                query,
                self._registry_views(repo, actor, found_regs[:limit]),
                self._collection_views(repo, colls),
                versions,
            )

        with _naming(f"the search {query[:MAX_QUERY]!r}", "use fewer or longer words"):
            return self.db.read(fn)
