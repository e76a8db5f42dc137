"""Request bodies of the REST API (pydantic models, so /docs shows them).

Responses are the service's views as JSON (:func:`regalia.service.views.to_jsonable`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from regalia.server.params import (
    ActionName,
    Alias,
    ArtifactName,
    Digest,
    EntityName,
    EventName,
    FilterKindName,
    OrgRoleName,
    PartNumber,
    RegistryName,
    RegistryRoleName,
    RegistryTarget,
    Size,
    Tag,
    TeamRoleName,
    VisibilityName,
)


def has_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character (U+0000) in a string or key.
    PostgreSQL cannot store NUL in text or JSON, so no API input may hold one
    (on SQLite neither: both stores keep the same things)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                return True
        elif kind is dict:
            stack += item.keys()
            stack += item.values()
        elif kind is list:
            stack += item
    return False


def nul_at(value: Any, where: str = "body") -> str | None:
    """Where the first NUL of ``value`` is (for the error message), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            items += [(f"{where} key", key), (f"{where}.{key}", item)]
    elif isinstance(value, list):
        items = [(f"{where}[{i}]", item) for i, item in enumerate(value)]
    return next((found for w, item in items if (found := nul_at(item, w))), None)


class Part(BaseModel):
    """A model inside a body (checked as part of it)."""

    model_config = ConfigDict(extra="forbid")


class Body(Part):
    """A request body: no unknown fields, no NUL anywhere."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if has_nul(data):
            raise ValueError(
                f"{nul_at(data)!r} holds a NUL character (U+0000), which text may not hold"
            )
        return data


class NewUser(Body):
    name: EntityName
    org_role: OrgRoleName = "member"
    service_account: bool = False
    exist_ok: bool = False


class OrgRoleChange(Body):
    org_role: OrgRoleName


class GcRequest(Body):
    grace_s: float = Field(
        86400.0,
        ge=0,
        le=10 * 365 * 86400,
        description="free only contents unreferenced and untouched for this many seconds",
    )
    dry_run: bool = Field(False, description="report what would be freed; delete nothing")


class NewTeam(Body):
    name: EntityName
    exist_ok: bool = False


class TeamMemberAdd(Body):
    user: EntityName
    role: TeamRoleName | None = Field(
        None,
        description="team role: 'member' or 'admin'; default 'member' for a new member, "
        "unchanged for an existing one",
    )


class TeamRoleChange(Body):
    role: TeamRoleName = Field(description="team role: 'member' or 'admin'")


class NewRegistry(Body):
    name: RegistryName
    visibility: VisibilityName = "organization"
    description: str = ""
    artifact_types: list[ArtifactName] | None = None
    exist_ok: bool = False


class RegistryChange(Body):
    description: str | None = None
    visibility: VisibilityName | None = None
    artifact_types: list[ArtifactName] | None = None
    clear_artifact_types: bool = False


class RoleAssignment(Body):
    user: EntityName | None = None
    team: EntityName | None = None
    role: RegistryRoleName | None = Field(
        None, description="admin, member, viewer, restricted_viewer; null removes"
    )


class ProtectedAliasAdd(Body):
    alias: Alias


class CollectionChange(Body):
    description: str | None = None
    add_tags: list[Tag] = []
    remove_tags: list[Tag] = []


class Search(Body):
    registry_filter: dict[str, Any] | None = None
    collection_filter: dict[str, Any] | None = None
    filter: dict[str, Any] | None = None
    order: str | None = None
    cursor: str | None = None
    limit: int = Field(100, ge=1, le=1000)


class File(Part):
    path: str
    digest: Digest
    size: Size
    check: str | None = None


class NewVersion(Body):
    entity: EntityName
    project: EntityName
    name: ArtifactName
    type: ArtifactName
    files: list[File]
    description: str | None = None
    metadata: dict[str, Any] | None = None
    aliases: list[Alias] = []
    tags: list[Tag] = []
    run_key: str | None = None


class VersionChange(Body):
    description: str | None = None
    metadata: dict[str, Any] | None = None
    add_tags: list[Tag] = []
    remove_tags: list[Tag] = []


class NewLink(Body):
    target: RegistryTarget
    aliases: list[Alias] = []


class AliasChange(Body):
    add: list[Alias] = []
    remove: list[Alias] = []
    exactly: list[Alias] | None = None


class NewRun(Body):
    entity: EntityName
    project: EntityName
    run_key: str
    job_type: str | None = None


class Use(Body):
    run_key: str


class DigestList(Body):
    digests: list[Digest]


class NewUpload(Body):
    digest: Digest
    size: Size


class PartToSend(Body):
    part: PartNumber
    sha256: Digest = Field(description="the part's SHA-256: its URL accepts no other bytes")


class PartsToSend(Body):
    parts: list[PartToSend] = Field(max_length=1000)


class NewAutomation(Body):
    name: EntityName
    event: EventName
    action: ActionName
    target: str = Field(description="the Slack incoming-webhook URL, or the webhook's URL")
    collection: ArtifactName | None = Field(
        None, description="null: every collection of the registry"
    )
    filter_kind: FilterKindName | None = None
    filter_value: str | None = None
    access_token: str | None = Field(None, description="sent as Authorization: Bearer")
    signing_secret: str | None = Field(None, description="signs each body (HMAC-SHA256)")
    secrets: dict[str, str] = Field(
        default_factory=dict, description="usable as ${NAME} in the payload template"
    )
    payload_template: str | None = Field(None, description="JSON with ${variables}")
    description: str = ""
    enabled: bool = True


class AutomationChange(Body):
    enabled: bool
