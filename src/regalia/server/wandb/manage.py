"""Changing what was logged and linked: the `wandb` client's ``artifact.save()``
(``addAliases``, ``deleteAliases``, ``updateArtifact``), ``unlink()``
(``unlinkArtifact``) and ``delete()`` (``deleteArtifact``), and a registry
collection's ``save()`` (description, tags) and ``delete()``.

The client names a version by its *source* id (``Artifact:<version id>``) and,
for aliases and unlinks, the collection it acts in: ``entity/project/name``
(``<org>/wandb-registry-<registry>/<collection>`` for a link) or the
portfolio's id. ``service.membership_in`` (service/lookups.py) finds that
membership; everything else
is the service's: the same rules as the SDK, CLI and UI (R5 alias moves, R7
protected aliases, roles, R11 history, automations). A refusal is Regalia's
error (403, 404, 409, 400), which the client reports without retrying.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from regalia.core.names import REGISTRY_PREFIX, name_key
from regalia.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from regalia.server.wandb import reads, registries  # noqa: F401  (registries' resolvers register too)
from regalia.server.wandb.ids import decode_int_id, encode_id
from regalia.server.wandb.objects import artifact_of, collection_of, tag_of
from regalia.server.wandb.resolvers import WandbContext, context, field, mutation
from regalia.service.access import can_use_entity
from regalia.service.views import VersionView

LATEST = "latest"


def _alias_changes(
    ctx: WandbContext, version_id: int, aliases: list[dict[str, Any]]
) -> dict[int, list[str]]:
    """The aliases of an ``AddAliasesInput``/``DeleteAliasesInput``, by membership."""
    by_target: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for a in aliases:
        target = (a["entityName"], a["projectName"], a["artifactCollectionName"])
        by_target[target].append(a["alias"])
    return {
        ctx.service.membership_in(ctx.actor, version_id, *target): names
        for target, names in by_target.items()
    }


@mutation("addAliases")
def add_aliases(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``artifact.aliases.append(...); artifact.save()``: each alias moves to this
    version from wherever it was in the collection (R5); ``latest`` and ``vN`` are
    the registry's to set (the client sends them only if the user added them:
    Regalia's 400 says so)."""
    ctx = context(info)
    version_id = decode_int_id(input["artifactID"], "Artifact")
    for membership_id, names in _alias_changes(ctx, version_id, input["aliases"]).items():
        ctx.service.change_aliases(ctx.actor, membership_id, add=names)
    return {"success": True, "clientMutationId": input.get("clientMutationId")}


@mutation("deleteAliases")
def delete_aliases(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``artifact.aliases.remove(...); artifact.save()``."""
    ctx = context(info)
    version_id = decode_int_id(input["artifactID"], "Artifact")
    for membership_id, names in _alias_changes(ctx, version_id, input["aliases"]).items():
        ctx.service.change_aliases(ctx.actor, membership_id, remove=names)
    return {"success": True, "clientMutationId": input.get("clientMutationId")}


def _source(ctx: WandbContext, artifact_id: str) -> VersionView:
    return ctx.service.version_by_id(ctx.actor, decode_int_id(artifact_id, "Artifact"))


def _metadata(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise InvalidRequest("the artifact's metadata is not JSON") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("the artifact's metadata is a JSON object")
    return value


@mutation("updateArtifact")
def update_artifact(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """The rest of ``artifact.save()``: description, metadata and tags of the
    version (R8: they belong to the version, so every link of it shows them).
    Also the Go core's metadata-only update after a log.

    The client names only the version. Linked once where the caller sees it,
    the change is made through that link, as Regalia's SDK does for a version
    fetched by its registry path: the registry's roles, history and
    automations apply (a caller the registry refuses who may edit the source
    edits it there). Otherwise through the source artifact. What does not
    change is not sent to the service at all (0.22.3 sends the description and
    metadata with every save, also a registry member's who may not see the
    source)."""
    ctx = context(info)
    version_id = decode_int_id(input["artifactID"], "Artifact")
    source_mid, link_mids = ctx.service.visible_memberships(ctx.actor, version_id)
    some = source_mid if source_mid is not None else link_mids[0]
    current = ctx.service.get_version(ctx.actor, some)
    description = input.get("description")
    metadata = _metadata(input.get("metadata"))
    changes: dict[str, Any] = {
        "description": description if description != current.description else None,
        "metadata": metadata if metadata != current.metadata else None,
        "add_tags": [t["tagName"] for t in input.get("tagsToAdd") or ()],
        "remove_tags": [t["tagName"] for t in input.get("tagsToDelete") or ()],
    }
    unchanged = (
        changes["description"] is None
        and changes["metadata"] is None
        and not changes["add_tags"]
        and not changes["remove_tags"]
    )
    if unchanged:
        view = current
    elif len(link_mids) == 1 or source_mid is None:
        try:
            view = ctx.service.update_version(ctx.actor, link_mids[0], **changes)
        except PermissionDenied:
            if source_mid is None:
                raise
            view = ctx.service.update_version(ctx.actor, source_mid, **changes)
    else:
        view = ctx.service.update_version(ctx.actor, source_mid, **changes)
    if view.is_link:
        view = ctx.service.source_of(ctx.actor, view.membership_id)
    return {"artifact": artifact_of(ctx, view), "clientMutationId": input.get("clientMutationId")}


@mutation("unlinkArtifact")
def unlink_artifact(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``artifact.unlink()`` (and ``delete()`` of a link): the version leaves the
    registry collection; its source stays (R9)."""
    ctx = context(info)
    version_id = decode_int_id(input["artifactID"], "Artifact")
    collection_id = decode_int_id(input["artifactPortfolioID"], "ArtifactPortfolio")
    membership_id = ctx.service.membership_in_collection(version_id, collection_id)
    ctx.service.unlink(ctx.actor, membership_id)
    return {
        "artifactID": input["artifactID"],
        "success": True,
        "clientMutationId": input.get("clientMutationId"),
    }


@mutation("deleteArtifact")
def delete_artifact(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``artifact.delete()`` of a source version: it is unlinked everywhere and
    deleted (R9; refused while a link holds a protected alias, R7). Without
    ``delete_aliases=True`` a version holding aliases in its own artifact is kept."""
    ctx = context(info)
    source = _source(ctx, input["artifactID"])
    held = [a for a in source.aliases if name_key(a) != LATEST]
    if held and not input.get("deleteAliases"):
        raise Conflict(
            f"{source.source_qualified_name} has aliases {held}; delete it with "
            "delete(delete_aliases=True) to remove them too",
            aliases=held,
        )
    ctx.service.delete_version(ctx.actor, source.membership_id)
    return {"artifact": artifact_of(ctx, source), "clientMutationId": input.get("clientMutationId")}


@field("Project", "readOnly")
def project_read_only(obj: dict[str, Any], info: Any, **_: Any) -> bool:
    """Whether the caller may not change the artifacts of this project: a source
    project is the entity's users', teams' and org admins' (a registry's rules
    are checked on each change)."""
    ctx = context(info)
    if obj["name"].startswith(REGISTRY_PREFIX):
        return False
    return not can_use_entity(ctx.actor, obj["entityName"])


@field("Project", "artifactType")
def project_artifact_type(
    obj: dict[str, Any], info: Any, name: str | None = None, **_: Any
) -> dict[str, Any] | None:
    """``project.artifactType(name).artifactCollection(name)``: the client fetches
    ``artifact.collection`` (whose id ``unlink()`` sends) this way."""
    if not name:
        return None
    entity, project = obj["entityName"], obj["name"]

    def collection(info: Any, name: str | None = None, **_: Any) -> dict[str, Any] | None:
        ctx = context(info)
        if not name:
            return None
        try:
            if project.startswith(REGISTRY_PREFIX):
                registry = project[len(REGISTRY_PREFIX) :]
                view = ctx.service.get_collection(ctx.actor, registry, name)
            else:
                view = ctx.service.resolve(ctx.actor, f"{entity}/{project}/{name}").collection
        except NotFound:  # none the caller may see: null, as W&B answers
            return None
        if view.type != type_name:
            return None
        return collection_of(ctx, view)

    type_name = name
    return {
        "id": encode_id("ArtifactType", name),
        "name": name,
        "artifactCollection": collection,
        "artifact": lambda info, name, **a: reads.artifact_of_type(obj, info, type_name, name, **a),
    }


# -- a registry collection's card: description and tags (collection.save()) -------------


def _card_target(ctx: WandbContext, entity: str, project: str, collection: str) -> str:
    """The registry of ``entity/project/collection``; a source artifact has no card."""
    if not project.startswith(REGISTRY_PREFIX):
        raise InvalidRequest(
            f"{entity}/{project}/{collection} is a source artifact: in Regalia, tags and "
            "descriptions of collections are a registry collection's (link it, then tag it there)"
        )
    return project[len(REGISTRY_PREFIX) :]


@mutation("updateArtifactPortfolio")
def update_artifact_portfolio(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``collection.description = ...; collection.save()`` of a registry collection:
    service.update_collection (registry members; history)."""
    ctx = context(info)
    registry, name = ctx.service.registry_collection_names(
        ctx.actor, decode_int_id(input["artifactPortfolioID"], "ArtifactPortfolio")
    )
    wanted = input.get("name")
    if wanted is not None and wanted != name:
        raise InvalidRequest(
            f"collection {name!r} keeps its name in Regalia (renaming to {wanted!r} is not "
            "supported): versions are found by registry path"
        )
    view = ctx.service.update_collection(
        ctx.actor, registry, name, description=input.get("description")
    )
    return {
        "artifactCollection": collection_of(ctx, view),
        "clientMutationId": input.get("clientMutationId"),
    }


@mutation("updateArtifactSequence")
def update_artifact_sequence(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``collection.save()`` of a source artifact: nothing to change in Regalia, so
    only what it already is is accepted (never a silent drop of a change)."""
    ctx = context(info)
    sequence_id = decode_int_id(input["artifactSequenceID"], "ArtifactSequence")
    current_name, current_description = ctx.service.sequence_card(ctx.actor, sequence_id)
    name, description = input.get("name"), input.get("description")
    if (name is not None and name != current_name) or (description or "") != current_description:
        raise InvalidRequest(
            f"the source artifact {current_name!r} keeps its name and description in Regalia; "
            "describe and tag the registry collection it is linked to instead"
        )
    return {"artifactCollection": None, "clientMutationId": input.get("clientMutationId")}


def _tags(input: dict[str, Any]) -> list[str]:  # noqa: A002
    return [t["tagName"] for t in input["tags"]]


@mutation("createArtifactCollectionTagAssignments")
def add_collection_tags(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``collection.tags.append(...); collection.save()``."""
    ctx = context(info)
    registry = _card_target(
        ctx, input["entityName"], input["projectName"], input["artifactCollectionName"]
    )
    tags = _tags(input)
    ctx.service.update_collection(
        ctx.actor, registry, input["artifactCollectionName"], add_tags=tags
    )
    return {"tags": [tag_of(t) for t in tags], "clientMutationID": input.get("clientMutationID")}


@mutation("deleteArtifactCollectionTagAssignments")
def delete_collection_tags(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``collection.tags.remove(...); collection.save()``."""
    ctx = context(info)
    registry = _card_target(
        ctx, input["entityName"], input["projectName"], input["artifactCollectionName"]
    )
    ctx.service.update_collection(
        ctx.actor, registry, input["artifactCollectionName"], remove_tags=_tags(input)
    )
    return {"success": True, "clientMutationID": input.get("clientMutationID")}


@mutation("deleteArtifactPortfolio")
def delete_artifact_portfolio(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``collection.delete()`` of a registry collection: service.delete_collection
    (its links go, their sources stay; R7: an admin's if it holds a protected alias)."""
    ctx = context(info)
    registry, name = ctx.service.registry_collection_names(
        ctx.actor, decode_int_id(input["artifactPortfolioID"], "ArtifactPortfolio")
    )
    view = ctx.service.get_collection(ctx.actor, registry, name)
    ctx.service.delete_collection(ctx.actor, registry, name)
    return {
        "artifactCollection": collection_of(ctx, view),
        "clientMutationId": input.get("clientMutationId"),
    }


@mutation("deleteArtifactSequence")
def delete_artifact_sequence(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``collection.delete()`` of a source artifact: refused with what to do instead."""
    decode_int_id(input["artifactSequenceID"], "ArtifactSequence")
    raise InvalidRequest(
        "Regalia deletes a source artifact version by version (artifact.delete(), which "
        "also unlinks it and refuses while a link holds a protected alias), not all at once"
    )
