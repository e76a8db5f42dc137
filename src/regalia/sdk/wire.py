"""The service's views rebuilt from the REST API's JSON (the inverse of
:func:`regalia.service.views.to_jsonable`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from regalia.service.views import (
    Actor,
    AttemptView,
    AutomationView,
    CollectionView,
    DeliveryView,
    FileEntry,
    HistoryEntry,
    KeyView,
    MemberView,
    Page,
    RegistryView,
    TeamMemberView,
    TeamView,
    UserView,
    VersionView,
)

T = TypeVar("T")


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def actor(d: dict[str, Any]) -> Actor:
    return Actor(
        **{
            **d,
            "team_ids": tuple(d.get("team_ids", ())),
            "team_names": tuple(d.get("team_names", ())),
        }
    )


def user(d: dict[str, Any]) -> UserView:
    return UserView(**d)


def team(d: dict[str, Any]) -> TeamView:
    return TeamView(**{**d, "members": [TeamMemberView(**m) for m in d["members"]]})


def member(d: dict[str, Any]) -> MemberView:
    return MemberView(**d)


def registry(d: dict[str, Any]) -> RegistryView:
    return RegistryView(
        **{**d, "created_at": _when(d["created_at"]), "updated_at": _when(d["updated_at"])}
    )


def collection(d: dict[str, Any]) -> CollectionView:
    return CollectionView(
        **{**d, "created_at": _when(d["created_at"]), "updated_at": _when(d["updated_at"])}
    )


def version(d: dict[str, Any]) -> VersionView:
    return VersionView(
        **{
            **d,
            "collection": collection(d["collection"]),
            "created_at": _when(d["created_at"]),
            "updated_at": _when(d["updated_at"]),
        }
    )


def file_entry(d: dict[str, Any]) -> FileEntry:
    return FileEntry(**d)


def history_entry(d: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(**{**d, "created_at": _when(d["created_at"])})


def page(d: dict[str, Any], item: Callable[[dict[str, Any]], T]) -> Page:
    return Page([item(x) for x in d["items"]], d.get("next_cursor"))


def many(items: list[dict[str, Any]], item: Callable[[dict[str, Any]], T]) -> list[T]:
    return [item(x) for x in items]


def _maybe_when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def automation(d: dict[str, Any]) -> AutomationView:
    return AutomationView(
        **{**d, "created_at": _when(d["created_at"]), "updated_at": _when(d["updated_at"])}
    )


def delivery(d: dict[str, Any]) -> DeliveryView:
    return DeliveryView(
        **{
            **d,
            "created_at": _when(d["created_at"]),
            "next_attempt_at": _maybe_when(d["next_attempt_at"]),
            "finished_at": _maybe_when(d["finished_at"]),
        }
    )


def attempt(d: dict[str, Any]) -> AttemptView:
    return AttemptView(**{**d, "started_at": _when(d["started_at"])})


def api_key(d: dict[str, Any]) -> KeyView:
    return KeyView(
        **{
            **d,
            "created_at": _when(d["created_at"]),
            "revoked_at": _maybe_when(d["revoked_at"]),
        }
    )
