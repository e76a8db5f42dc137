"""The root lookups every part of the W&B protocol shares: ``project`` (where
modules hang their ``Project`` fields) and ``artifact(id)`` (a source version
by the id the client got from an earlier answer)."""

from __future__ import annotations

from typing import Any

from regalia.errors import InvalidRequest
from regalia.server.wandb.ids import decode_int_id
from regalia.server.wandb.objects import artifact_of, project_of
from regalia.server.wandb.resolvers import context, query


@query("project")
def project(info: Any, name: str | None = None, entityName: str | None = None) -> Any:  # noqa: N803
    """``entity/project`` as a ``Project`` (its fields look things up lazily;
    an unnamed project is the caller's own entity's)."""
    ctx = context(info)
    if not name:
        raise InvalidRequest("project needs a name")
    return project_of(entityName or ctx.actor.name, name)


@query("artifact")
def artifact(info: Any, id: str) -> Any:  # noqa: A002
    """The source version with the W&B id ``id`` (``Artifact:<version id>``)."""
    ctx = context(info)
    version_id = decode_int_id(id, "Artifact")
    return artifact_of(ctx, ctx.service.version_by_id(ctx.actor, version_id))
