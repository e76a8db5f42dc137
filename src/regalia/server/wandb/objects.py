"""Regalia's views as the W&B types of ``schema/base.graphql``.

One place builds each shared type, so every operation answers the same
object the same way: a source version is an ``Artifact`` (its id is the
version's), what a collection lists is an ``ArtifactCollectionMembership``
(its id is the membership's), a source artifact is an ``ArtifactSequence`` in
``entity/project``, and a registry collection is an ``ArtifactPortfolio`` in
the project ``wandb-registry-<registry>`` of the organization's entity.
Modules add fields to these types with :func:`.resolvers.field`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from regalia.core.names import REGISTRY_PREFIX
from regalia.server.wandb.ids import encode_id
from regalia.server.wandb.resolvers import WandbContext, with_fields
from regalia.service.views import CollectionView, VersionView


def timestamp(at: datetime | None) -> str | None:
    """W&B's time format (ISO 8601, UTC, no offset)."""
    if at is None:
        return None
    return at.replace(tzinfo=None).isoformat(timespec="seconds")


def project_of(entity: str, project: str) -> dict[str, Any]:
    key = f"{entity}/{project}"
    return with_fields(
        "Project",
        {
            "id": encode_id("Project", key),
            "internalId": encode_id("Project", key),
            "name": project,
            "entityName": entity,
            "entity": {"id": encode_id("Entity", entity), "name": entity},
            "createdAt": None,
            "description": None,
        },
    )


def collection_project(ctx: WandbContext, c: CollectionView) -> tuple[str, str]:
    """(entity, project) a collection lives in, as W&B names them."""
    if c.kind == "portfolio":
        return ctx.actor.org_name, f"{REGISTRY_PREFIX}{c.registry}"
    assert c.entity is not None and c.project is not None
    return c.entity, c.project


def collection_of(ctx: WandbContext, c: CollectionView) -> dict[str, Any]:
    """A source artifact as an ``ArtifactSequence``, a registry collection as
    an ``ArtifactPortfolio``."""
    type_name = "ArtifactPortfolio" if c.kind == "portfolio" else "ArtifactSequence"
    entity, project = collection_project(ctx, c)
    return with_fields(
        type_name,
        {
            "__typename": type_name,
            "id": encode_id(type_name, c.id),
            "name": c.name,
            "description": c.description or None,  # 0.22.3 refuses ""
            "project": project_of(entity, project),
            "createdAt": timestamp(c.created_at),
            "updatedAt": timestamp(c.updated_at),
            "tags": {"edges": [{"node": tag_of(t)} for t in c.tags]},
            "defaultArtifactType": {"name": c.type},
            "type": c.type,
        },
    )


def tag_of(name: str) -> dict[str, Any]:
    return {"id": encode_id("Tag", name), "name": name}


def alias_of(ctx: WandbContext, view: VersionView, name: str) -> dict[str, Any]:
    return {
        "id": encode_id("ArtifactAlias", f"{view.collection.id}:{name}"),
        "alias": name,
        "artifactCollection": collection_of(ctx, view.collection),
    }


def artifact_of(ctx: WandbContext, source: VersionView) -> dict[str, Any]:
    """A source version (``source.collection`` is its sequence) as an ``Artifact``."""
    assert not source.is_link, "an Artifact is the source version; pass its source view"
    return with_fields(
        "Artifact",
        {
            "__typename": "Artifact",
            "id": encode_id("Artifact", source.version_id),
            "versionIndex": source.index,
            "state": "COMMITTED",
            "digest": source.digest,
            "artifactType": {"id": encode_id("ArtifactType", source.type), "name": source.type},
            "artifactSequence": collection_of(ctx, source.collection),
            "description": source.description or None,
            "metadata": json.dumps(source.metadata),
            "ttlDurationSeconds": -1,
            "ttlIsInherited": True,
            "tags": [tag_of(t) for t in source.tags],
            "historyStep": None,
            "size": source.size,
            "fileCount": source.file_count,
            "commitHash": source.digest[:12],
            "createdAt": timestamp(source.created_at),
            "updatedAt": timestamp(source.updated_at),
            "aliases": [alias_of(ctx, source, a) for a in source.aliases],
            "_view": source,
        },
    )


def membership_of(ctx: WandbContext, view: VersionView, source: VersionView) -> dict[str, Any]:
    """``view`` (a link, or a source version in its own sequence) as an
    ``ArtifactCollectionMembership`` of the ``Artifact`` ``source``."""
    return with_fields(
        "ArtifactCollectionMembership",
        {
            "__typename": "ArtifactCollectionMembership",
            "id": encode_id("ArtifactCollectionMembership", view.membership_id),
            "versionIndex": view.index,
            "createdAt": timestamp(view.created_at),
            "aliases": [alias_of(ctx, view, a) for a in view.aliases],
            "artifactCollection": collection_of(ctx, view.collection),
            "artifact": artifact_of(ctx, source),
            "_view": view,
        },
    )
