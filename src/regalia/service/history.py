"""History (R11): who linked, unlinked, moved which alias, when; and listings."""

from __future__ import annotations

from datetime import datetime

from regalia.core.names import MAX_ID
from regalia.errors import InvalidRequest
from regalia.service.access import visible_registry
from regalia.service.base import ServiceBase, as_utc
from regalia.service.views import Actor, HistoryEntry, Page
from regalia.store.models import Collection, HistoryEvent, Registry
from regalia.store.repo import Repo

_HOLDS = {"alias_add"}


class HistoryMixin(ServiceBase):
    def history(
        self,
        actor: Actor,
        registry: str,
        collection: str | None = None,
        *,
        alias: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """Newest-first history of a registry or one of its collections."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit must be between 1 and 1000")
        before = None
        if cursor:
            # ASCII digits only (int() also takes ' 7', '1_000' and other scripts' digits),
            # and within the ids the database holds.
            if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19) or not (
                0 < int(cursor) <= MAX_ID
            ):
                raise InvalidRequest(
                    f"invalid history cursor {cursor[:40]!r}: pass back the next_cursor "
                    "of the previous page unchanged"
                )
            before = int(cursor)

        def fn(repo: Repo) -> Page:
            reg, _ = visible_registry(repo, actor, registry)
            coll_id = None
            if collection is not None:
                coll = repo.collection_in_registry(reg.id, collection)
                coll_id = coll.id if coll is not None else -1
            rows = repo.history(
                org_id=actor.org_id,
                registry_id=reg.id,
                collection_id=coll_id,
                alias=alias,
                before_id=before,
                limit=limit + 1,
            )
            items = [self._entry(repo, r, reg) for r in rows[:limit]]
            nxt = str(rows[limit - 1].id) if len(rows) > limit else None
            return Page(items=items, next_cursor=nxt)

        return self.db.read(fn)

    def alias_at(
        self, actor: Actor, registry: str, collection: str, alias: str, when: datetime
    ) -> int | None:
        """R11: the index of the version that held ``alias`` at time ``when`` (None: nobody)."""

        def fn(repo: Repo) -> int | None:
            reg, _ = visible_registry(repo, actor, registry)
            coll = repo.collection_in_registry(reg.id, collection)
            if coll is None:
                return None
            rows = repo.history(
                org_id=actor.org_id, collection_id=coll.id, alias=alias, until=when, limit=1
            )
            if not rows:
                return None
            last = rows[0]
            return last.version_index if last.action in _HOLDS else None

        return self.db.read(fn)

    def _entry(self, repo: Repo, row: HistoryEvent, reg: Registry) -> HistoryEntry:
        coll = repo.get(Collection, row.collection_id) if row.collection_id else None
        details = dict(row.details or {})
        return HistoryEntry(
            id=row.id,
            action=row.action,
            actor=row.actor_name,
            created_at=as_utc(row.created_at),
            registry=reg.name,
            collection=coll.name if coll else details.get("collection"),
            version_index=row.version_index,
            alias=row.alias,
            details=details,
        )
