"""What the REST API answers, as schemas for the OpenAPI document.

Handlers return pre-built JSON (:func:`regalia.server.deps.out`), so these
models are never used to serialize; they only describe it. The service's view
dataclasses (:mod:`regalia.service.views`) describe themselves; the models
here give the small envelopes around them a name. ``openapi.truthful`` marks
every field of a view as always present, which is what ``to_jsonable`` sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from regalia.service.views import (
    CollectionView,
    FileEntry,
    HistoryEntry,
    RegistryView,
    UserView,
    VersionView,
)


class Out(BaseModel):
    """Base of the response envelopes."""


class Health(Out):
    status: str = Field(description="'ok' while the process answers")


class Deleted(Out):
    deleted: str | int = Field(description="the name or id of what was deleted")


class Unlinked(Out):
    unlinked: int = Field(description="the id of the link that was removed")


class Discarded(Out):
    discarded: str = Field(description="the digest whose upload was thrown away")


class ApiKey(Out):
    api_key: str = Field(description="the new key, shown this once")


class NewUserOut(Out):
    user: UserView
    api_key: str | None = Field(description="the new user's key; null when it existed already")


class Revoked(Out):
    revoked: int = Field(description="how many keys were revoked")


class ProtectedAliases(Out):
    protected_aliases: list[str]


class AliasAt(Out):
    index: int | None = Field(description="N of the vN that held the alias then; null: none")


class RunKey(Out):
    run_key: str


class SourceRun(Out):
    run_key: str = Field(description="the run's id (W&B's run id for the wandb client)")
    path: str = Field(description="entity/project/run_key")
    display_name: str | None = Field(description="the run's name in the wandb client")
    job_type: str | None
    state: str | None = Field(description="running, finished or crashed (wandb client runs)")
    exit_code: int | None
    created_at: datetime
    finished_at: datetime | None


class Lineage(Out):
    logged_by: str | None = Field(description="the run that logged the version")
    source_run: SourceRun | None = Field(description="that run: where it ran, how it ended")
    used_by: list[str] = Field(description="the runs that used it")


class Missing(Out):
    missing: list[str] = Field(description="the digests the store lacks")


class StoredContent(Out):
    digest: str
    size: int
    check: str | None = Field(description="'blake3:<hex>' of the same bytes")
    stored: bool = True


class UploadProgress(Out):
    """A resumable upload: what it is, and which parts arrived (or that the
    content is stored already)."""

    digest: str
    size: int
    part_size: int | None = None
    part_count: int | None = None
    parts_received: list[int] | None = None
    stored: bool = Field(description="true: the content is stored, nothing needs sending")
    direct: bool = Field(
        False,
        description="true: send the parts straight to the bucket, at the URLs "
        "POST /uploads/{digest}/parts gives",
    )


class PartUrl(Out):
    part: int
    url: str = Field(description="PUT the part's bytes here (no credentials: it is signed)")
    headers: dict[str, str] = Field(description="headers the PUT must carry")


class PartUrls(Out):
    parts: list[PartUrl]


class PartReceived(Out):
    part: int
    size: int = Field(description="bytes written")


class RegistryPage(Out):
    items: list[RegistryView]
    next_cursor: str | None = Field(description="pass it as cursor for the next page")


class CollectionPage(Out):
    items: list[CollectionView]
    next_cursor: str | None


class VersionPage(Out):
    items: list[VersionView]
    next_cursor: str | None


class HistoryPage(Out):
    items: list[HistoryEntry]
    next_cursor: str | None


Files = list[FileEntry]
JsonObject = dict[str, Any]
