"""Plain, serializable records the service returns (no ORM objects leave it)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from regalia.core.names import REGISTRY_PREFIX


@dataclass(frozen=True)
class Actor:
    """Who is acting: resolved from an API key or the local owner."""

    user_id: int
    name: str
    org_id: int
    org_name: str
    org_role: str
    kind: str  # 'user' | 'service'
    team_ids: tuple[int, ...] = ()
    team_names: tuple[str, ...] = ()

    @property
    def is_org_admin(self) -> bool:
        return self.org_role == "admin"


@dataclass(frozen=True)
class GcReport:
    """What a garbage collection did (or, with ``dry_run``, would do).

    Every blob of the store is counted once: freed (or, in a dry run, to be
    freed), kept because something references it, kept because it is younger
    than the grace period (written, or claimed by an upload or an "already
    stored" answer, within it), or kept because deleting it failed.
    """

    dry_run: bool
    grace_s: float
    scanned: int
    freed_blobs: int
    freed_bytes: int
    kept_referenced: int
    kept_young: int
    failed: int = 0
    freed: list[str] = field(default_factory=list)  # the freed digests


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    kind: str
    org_role: str
    teams: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class KeyView:
    """An API key as its owner and org admins see it: never the key itself, only
    its first characters (``prefix``, what ``regalia key revoke`` takes)."""

    prefix: str
    user: str
    created_at: datetime
    revoked_at: datetime | None  # None: the key works


@dataclass(frozen=True)
class TeamMemberView:
    """A member of a team and their team role ('admin' manages the team's members)."""

    name: str
    role: str  # 'member' | 'admin'


@dataclass(frozen=True)
class TeamView:
    id: int
    name: str
    members: list[TeamMemberView]

    @property
    def admins(self) -> list[str]:
        return [m.name for m in self.members if m.role == "admin"]


@dataclass(frozen=True)
class MemberView:
    """A role in a registry given to a user or a team."""

    kind: str  # 'user' | 'team'
    name: str
    role: str


@dataclass(frozen=True)
class RegistryView:
    id: int
    name: str
    description: str
    visibility: str
    artifact_types: list[str] | None
    is_core: bool
    protected_aliases: list[str]
    role: str | None  # the caller's effective role
    collection_count: int
    created_at: datetime
    updated_at: datetime

    @property
    def full_name(self) -> str:
        return f"{REGISTRY_PREFIX}{self.name}"


@dataclass(frozen=True)
class CollectionView:
    id: int
    kind: str  # 'portfolio' (registry collection) | 'sequence' (source artifact)
    name: str
    type: str
    description: str
    tags: list[str]
    version_count: int
    registry: str | None
    entity: str | None
    project: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def path(self) -> str:
        if self.kind == "portfolio":
            return f"{REGISTRY_PREFIX}{self.registry}/{self.name}"
        return f"{self.entity}/{self.project}/{self.name}"


@dataclass(frozen=True)
class FileEntry:
    """A file of a version: its path, SHA-256 ``digest`` (its identity in the blob
    store), size, and ``check``, a faster digest of the same bytes ("blake3:<hex>")
    that downloads verify."""

    path: str
    digest: str
    size: int
    check: str | None = None


@dataclass(frozen=True)
class VersionView:
    """A version as seen through one collection (a registry link or its source)."""

    version_id: int
    membership_id: int
    collection: CollectionView
    index: int  # vN inside ``collection``
    source_entity: str
    source_project: str
    source_name: str
    source_index: int
    type: str
    aliases: list[str]  # includes 'latest' when held; not 'vN'
    protected_aliases: list[str]  # those of ``aliases`` that the registry protects
    tags: list[str]
    description: str
    metadata: dict[str, Any]
    digest: str
    size: int
    file_count: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    run_key: str | None = None
    created: bool = True  # False when R10 returned an existing version

    @property
    def version(self) -> str:
        return f"v{self.index}"

    @property
    def is_link(self) -> bool:
        return self.collection.kind == "portfolio"

    @property
    def qualified_name(self) -> str:
        return f"{self.collection.path}:v{self.index}"

    @property
    def source_qualified_name(self) -> str:
        return f"{self.source_entity}/{self.source_project}/{self.source_name}:v{self.source_index}"


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    action: str
    actor: str
    created_at: datetime
    registry: str | None
    collection: str | None
    version_index: int | None
    alias: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class AutomationView:
    """An automation as its users see it: secrets are never shown again, only
    which ones are set; the target shows its scheme and host only."""

    id: int
    name: str
    description: str
    registry: str
    collection: str | None  # None: every collection of the registry, later ones too
    event: str
    filter_kind: str | None
    filter_value: str | None
    action: str  # slack | webhook
    target: str  # e.g. "https://hooks.slack.com/…"
    has_access_token: bool
    has_signing_secret: bool
    secret_names: list[str]
    payload_template: str | None
    enabled: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DeliveryView:
    """One delivery of an automation and where it stands."""

    id: str  # the id sent with it (X-Regalia-Delivery): receivers deduplicate on it
    automation_id: int
    event: str
    status: str  # pending | succeeded | failed
    attempts: int
    payload: str  # as sent, secrets masked ("" until the first try)
    response_code: int | None
    error: str | None
    is_test: bool
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class AttemptView:
    """One try of a delivery."""

    attempt: int  # 1, 2, ...
    started_at: datetime
    duration_ms: int
    response_code: int | None  # None: no answer (connection refused, timeout...)
    excerpt: str  # the start of the response body, or the error
    worker: str


@dataclass(frozen=True)
class VersionHit:
    """A registry version the search found, and what matched (``alias`` or ``tag``)."""

    version: VersionView
    field: str
    value: str


@dataclass(frozen=True)
class SearchResults:
    """What the search box found, grouped; only what the caller may see."""

    query: str
    registries: list[RegistryView]
    collections: list[CollectionView]
    versions: list[VersionHit]


@dataclass(frozen=True)
class Page:
    """One page of a listing, with the cursor of the next page (None at the end)."""

    items: list[Any]
    next_cursor: str | None


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def to_jsonable(obj: Any) -> Any:
    """Views as JSON-ready dicts (datetimes as ISO-8601). One walk, no copies
    of the leaves (``dataclasses.asdict`` would deep-copy every value first)."""
    if hasattr(obj, "__dataclass_fields__"):
        names = _FIELD_NAMES.get(type(obj))
        if names is None:
            names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in fields(obj))
        return {name: to_jsonable(getattr(obj, name)) for name in names}
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj
