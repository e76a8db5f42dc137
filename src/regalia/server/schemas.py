"""Request bodies of the REST API (pydantic models, so /docs shows them).

Responses are the service's views as JSON (:func:`regalia.service.views.to_jsonable`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from regalia.core.names import MAX_ID

# Sizes fit the database's 64-bit integers (a bigger one is a 400 naming the field).
Size = Annotated[int, Field(ge=0, le=MAX_ID)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewUser(Body):
    name: str
    org_role: str = "member"
    service_account: bool = False
    exist_ok: bool = False


class OrgRoleChange(Body):
    org_role: str


class NewTeam(Body):
    name: str
    exist_ok: bool = False


class TeamMemberAdd(Body):
    user: str
    role: str | None = Field(
        None,
        description="team role: 'member' or 'admin'; default 'member' for a new member, "
        "unchanged for an existing one",
    )


class TeamRoleChange(Body):
    role: str = Field(description="team role: 'member' or 'admin'")


class NewRegistry(Body):
    name: str
    visibility: str = "organization"
    description: str = ""
    artifact_types: list[str] | None = None
    exist_ok: bool = False


class RegistryChange(Body):
    description: str | None = None
    visibility: str | None = None
    artifact_types: list[str] | None = None
    clear_artifact_types: bool = False


class RoleAssignment(Body):
    user: str | None = None
    team: str | None = None
    role: str | None = Field(
        None, description="admin, member, viewer, restricted_viewer; null removes"
    )


class ProtectedAliasAdd(Body):
    alias: str


class CollectionChange(Body):
    description: str | None = None
    add_tags: list[str] = []
    remove_tags: list[str] = []


class Search(Body):
    registry_filter: dict[str, Any] | None = None
    collection_filter: dict[str, Any] | None = None
    filter: dict[str, Any] | None = None
    order: str | None = None
    cursor: str | None = None
    limit: int = Field(100, ge=1, le=1000)


class File(Body):
    path: str
    digest: str
    size: Size
    check: str | None = None


class NewVersion(Body):
    entity: str
    project: str
    name: str
    type: str
    files: list[File]
    description: str | None = None
    metadata: dict[str, Any] | None = None
    aliases: list[str] = []
    tags: list[str] = []
    run_key: str | None = None


class VersionChange(Body):
    description: str | None = None
    metadata: dict[str, Any] | None = None
    add_tags: list[str] = []
    remove_tags: list[str] = []


class NewLink(Body):
    target: str = Field(description="wandb-registry-{registry}/{collection}")
    aliases: list[str] = []


class AliasChange(Body):
    add: list[str] = []
    remove: list[str] = []
    exactly: list[str] | None = None


class NewRun(Body):
    entity: str
    project: str
    run_key: str
    job_type: str | None = None


class Use(Body):
    run_key: str


class DigestList(Body):
    digests: list[str]


class NewUpload(Body):
    digest: str
    size: Size


class NewAutomation(Body):
    name: str
    event: str = Field(
        description="LINK_ARTIFACT, ADD_ARTIFACT_ALIAS, REMOVE_ARTIFACT_ALIAS, "
        "UNLINK_ARTIFACT or ADD_ARTIFACT_TAG"
    )
    action: str = Field(description="slack or webhook")
    target: str = Field(description="the Slack incoming-webhook URL, or the webhook's URL")
    collection: str | None = Field(None, description="null: every collection of the registry")
    filter_kind: str | None = Field(None, description="alias, alias_regex or tag_regex")
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
