"""The automations' transactional outbox (SPEC §5).

When a unit of work writes its history events (:meth:`Repo.finish`), the events
that automations listen to are matched against the enabled automations of their
registry, and one ``deliveries`` row per match is inserted, in the same
transaction as the change: the change and its deliveries commit together or
not at all, so a crash loses no event and sends nothing for a change that did
not happen. Workers send them later (``regalia.worker``).

A delivery keeps the event's variables (``${...}`` of the payload template),
not a rendered payload: the worker renders it when it sends, with the
automation's secrets, and records what it sent with the secrets masked.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.engine import Connection

from regalia.core.automations import EVENT_OF_ACTION, EventFilter, EventType, FilterKind
from regalia.store.models import (
    Automation,
    Collection,
    Delivery,
    Membership,
    Project,
    Registry,
    Version,
)

log = logging.getLogger(__name__)

_AUTOMATIONS = select(
    Automation.id,
    Automation.registry_id,
    Automation.collection_id,
    Automation.event,
    Automation.filter_kind,
    Automation.filter_value,
).where(
    Automation.enabled.is_(True),
    Automation.registry_id.in_(bindparam("rids", expanding=True)),
    Automation.event.in_(bindparam("events", expanding=True)),
)
_COLLECTIONS = (
    select(Collection.id, Collection.name, Collection.type, Registry.name)
    .join(Registry, Registry.id == Collection.registry_id)
    .where(Collection.id.in_(bindparam("ids", expanding=True)))
)
_Seq = Collection.__table__.alias("seq")
_VERSIONS = (
    select(Version.id, Version.metadata_, Project.entity, Project.name, _Seq.c.name)
    .join(_Seq, _Seq.c.id == Version.sequence_id)
    .join(Project, Project.id == _Seq.c.project_id)
    .where(Version.id.in_(bindparam("ids", expanding=True)))
)


_LINKS = (
    select(
        Membership.version_id,
        Membership.collection_id,
        Membership.version_index,
        Collection.registry_id,
    )  # fmt: skip
    .join(Collection, Collection.id == Membership.collection_id)
    .where(
        Membership.version_id.in_(bindparam("vids", expanding=True)),
        Collection.registry_id.is_not(None),
    )
)


def _via_links(conn: Connection, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tag added through the source artifact shows on every registry version
    linked to it: the same event, once per such registry collection."""
    tagged = [
        e for e in events
        if e["action"] == "tag_add" and e.get("registry_id") is None
        and e.get("version_id") is not None
    ]  # fmt: skip
    if not tagged:
        return []
    links = conn.execute(_LINKS, {"vids": sorted({e["version_id"] for e in tagged})}).all()
    return [
        {**e, "registry_id": link.registry_id, "collection_id": link.collection_id,
         "version_index": link.version_index}
        for e in tagged for link in links if link.version_id == e["version_id"]
    ]  # fmt: skip


def enqueue(conn: Connection, events: Sequence[dict[str, Any]]) -> int:
    """Insert the deliveries the history ``events`` of this unit of work call
    for; return how many."""
    relevant = [
        e
        for e in events
        if e["action"] in EVENT_OF_ACTION
        and e.get("registry_id") is not None
        and e.get("collection_id") is not None
    ] + _via_links(conn, events)
    if not relevant:
        return 0
    kinds = sorted({EVENT_OF_ACTION[e["action"]].value for e in relevant})
    rids = sorted({e["registry_id"] for e in relevant})
    automations = conn.execute(_AUTOMATIONS, {"rids": rids, "events": kinds}).all()
    if not automations:
        return 0
    # The aliases a version was linked with (LINK_ARTIFACT's filter): the alias
    # events of the same unit of work, for the same collection and version.
    link_aliases: dict[tuple[int, int], list[str]] = {}
    for e in relevant:
        if e["action"] == "alias_add":
            key = (e["collection_id"], e["version_id"])
            link_aliases.setdefault(key, []).append(e["alias"])
    rows: list[dict[str, Any]] = []
    for e in relevant:
        event = EVENT_OF_ACTION[e["action"]]
        details = e.get("details") or {}
        for a in automations:
            if a.event != event.value or a.registry_id != e["registry_id"]:
                continue
            if a.collection_id is not None and a.collection_id != e["collection_id"]:
                continue
            if a.filter_kind is not None:
                wanted = EventFilter(FilterKind(a.filter_kind), a.filter_value or "")
                if wanted.unusable:
                    log.warning(
                        "automation %s: its %s %r is not RE2 syntax, so it matches nothing "
                        "(recreate the automation with an RE2 pattern)",
                        a.id, wanted.kind.value, wanted.value,
                    )  # fmt: skip
                linked = link_aliases.get((e["collection_id"], e["version_id"]), [])
                if not wanted.matches(alias=e.get("alias"), tag=details.get("tag"),
                                      link_aliases=linked):  # fmt: skip
                    continue
            rows.append({"automation_id": a.id, "event": event, "source": e})
    if not rows:
        return 0
    context = _Context(conn, [r["source"] for r in rows])
    now: datetime = max(e["created_at"] for e in relevant)
    conn.execute(
        insert(Delivery),
        [
            delivery_row(
                r["automation_id"],
                r["event"].value,
                context.variables(r["event"], r["source"]),
                now,
            )  # fmt: skip
            for r in rows
        ],
    )
    return len(rows)


def delivery_row(
    automation_id: int, event: str, variables: dict[str, Any], now: datetime, *,
    is_test: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """A new pending delivery, due now, with a fresh id receivers deduplicate on."""
    return {
        "public_id": uuid.uuid4().hex,
        "automation_id": automation_id,
        "event": event,
        "variables": variables,
        "payload": "",
        "is_test": is_test,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


class _Context:
    """Names and metadata the events' variables need, in two queries."""

    def __init__(self, conn: Connection, events: Sequence[dict[str, Any]]) -> None:
        cids = sorted({e["collection_id"] for e in events})
        vids = sorted({e["version_id"] for e in events if e.get("version_id") is not None})
        self.collections = {
            row[0]: (row[1], row[2], row[3]) for row in conn.execute(_COLLECTIONS, {"ids": cids})
        }
        self.versions = {
            row[0]: (row[1] or {}, row[2], row[3], row[4])
            for row in (conn.execute(_VERSIONS, {"ids": vids}) if vids else [])
        }

    def variables(self, event: EventType, e: dict[str, Any]) -> dict[str, Any]:
        collection, ctype, registry = self.collections.get(e["collection_id"], ("", "", ""))
        metadata, entity, project, source = self.versions.get(
            e.get("version_id") or -1, ({}, None, None, None)
        )
        index = e.get("version_index")
        version = f"v{index}" if index is not None else None
        return event_variables(
            event=event,
            author=e["actor_name"],
            alias=e.get("alias"),
            tag=(e.get("details") or {}).get("tag"),
            registry=registry,
            collection=collection,
            collection_type=ctype,
            version=version,
            entity=entity,
            project=project,
            source=source,
            metadata=metadata,
        )


def event_variables(
    *,
    event: EventType,
    author: str,
    alias: str | None,
    tag: str | None,
    registry: str,
    collection: str,
    collection_type: str,
    version: str | None,
    entity: str | None,
    project: str | None,
    source: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The payload variables of one event (also used for "test" samples)."""
    path = f"wandb-registry-{registry}/{collection}"
    return {
        "event_type": event.value,
        "event_author": author,
        "alias": alias,
        "tag": tag,
        "registry_name": registry,
        "artifact_collection_name": collection,
        "artifact_collection_type": collection_type,
        "artifact_version": version,
        "artifact_version_string": f"{path}:{version}" if version else path,
        "entity_name": entity,
        "project_name": project,
        "source_artifact": f"{entity}/{project}/{source}" if source else None,
        "artifact_metadata": metadata,
    }
