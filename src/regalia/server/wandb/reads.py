"""Reading versions with the `wandb` client: ``wandb.Api().artifact(path)``,
``Api().artifact_exists``, ``run.use_artifact`` and ``.download()``.

A W&B name ``entity/project/"Coll:alias"`` is a Regalia path: a project
``wandb-registry-<name>`` (of the organization's entity) is a registry, any
other project a source ``entity/project/name``. What the caller may not see
is answered ``null`` (the client says "not found"; a restricted registry stays
invisible), never a different error.

Downloads go through URLs that authorize themselves (the client sends no
credentials to them): ``currentManifest.file.directUrl`` is a signed URL of
the version's ``wandb_manifest.json``, rendered from its files with W&B's
base64 MD5 digests, and each file's ``directUrl`` a signed URL of its bytes
(``GET /wandb/files/<token>``, HTTP Range supported). Both expire after
:data:`.signing.DOWNLOAD_TTL_S`; the route re-checks the user's rights.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from regalia.core.names import REGISTRY_PREFIX
from regalia.errors import InvalidRequest, NotFound
from regalia.server.routes_blobs import blob_response
from regalia.server.wandb.ids import decode_int_id, encode_id
from regalia.server.wandb.objects import (
    artifact_of,
    collection_of,
    membership_of,
    project_of,
)
from regalia.server.wandb.resolvers import WandbContext, context, field, mutation
from regalia.server.wandb.signing import DOWNLOAD_TTL_S, signer_of
from regalia.service import Service
from regalia.service.views import CollectionView, FileEntry, VersionView

router = APIRouter(include_in_schema=False)

FILE_PURPOSE = "wandb-download"
MANIFEST_PURPOSE = "wandb-manifest"
MANIFEST_NAME = "wandb_manifest.json"
PER_PAGE = 5000  # the client's own page size
MAX_PER_PAGE = 10000


# -- names -------------------------------------------------------------------------------------
def is_registry(project: str) -> bool:
    return project.lower().startswith(REGISTRY_PREFIX)


def regalia_path(ctx: WandbContext, entity: str, project: str, name: str) -> str | None:
    """The Regalia path of W&B's ``entity/project/name`` (None: a registry
    asked for under an entity that is not the organization's)."""
    if is_registry(project):
        if entity.lower() != ctx.actor.org_name.lower():
            return None
        return f"{REGISTRY_PREFIX}{project[len(REGISTRY_PREFIX) :]}/{name}"
    return f"{entity}/{project}/{name}"


def lookup(ctx: WandbContext, entity: str, project: str, name: str) -> VersionView | None:
    """The version W&B's ``entity/project/"name:ref"`` names, as seen in that
    collection (None when there is none the caller may see)."""
    path = regalia_path(ctx, entity, project, name)
    if path is None:
        return None
    try:
        return ctx.service.resolve(ctx.actor, path)
    except NotFound:
        return None


def source_view(ctx: WandbContext, view: VersionView) -> VersionView:
    return ctx.service.source_of(ctx.actor, view.membership_id) if view.is_link else view


# -- lookups on Project ------------------------------------------------------------------------
@field("Project", "artifactCollectionMembership")
def project_membership(obj: dict[str, Any], info: Any, name: str, **_: Any) -> Any:
    """``Api().artifact(path)`` since 0.26 (``ArtifactMembershipByName``)."""
    ctx = context(info)
    view = lookup(ctx, obj["entityName"], obj["name"], name)
    if view is None:
        return None
    return membership_of(ctx, view, source_view(ctx, view))


@field("Project", "artifact")
def project_artifact(obj: dict[str, Any], info: Any, name: str, **_: Any) -> Any:
    """``Api().artifact(path)`` before 0.26 (``ArtifactByName``): the source
    version, whose ``aliases`` hold those of the collection asked for (with a
    ``vN`` alias: the client takes the version from it) named as the client
    named the collection (it matches them exactly), and those of its source."""
    ctx = context(info)
    entity, project = obj["entityName"], obj["name"]
    view = lookup(ctx, entity, project, name)
    if view is None:
        return None
    source = source_view(ctx, view)
    out = artifact_of(ctx, source)
    asked = collection_of(ctx, view.collection)
    asked["name"] = name.split(":", 1)[0]
    asked["project"] = project_of(entity, project)
    aliases = [alias(view, a, asked) for a in [*view.aliases, view.version]]
    if view.is_link:
        own = collection_of(ctx, source.collection)
        aliases += [alias(source, a, own) for a in [*source.aliases, source.version]]
    out["aliases"] = aliases
    return out


def artifact_of_type(
    project: dict[str, Any], info: Any, type_name: str, name: str, **args: Any
) -> Any:
    """``project.artifactType(type).artifact(name)``: the version ``name`` of
    ``project`` if it has that type (how clients before 0.26 list a version's
    files, ``ArtifactVersionFiles``). MANAGE's ``Project.artifactType`` dict
    answers its ``artifact`` field with this."""
    found = project_artifact(project, info, name, **args)
    return found if found is not None and found["artifactType"]["name"] == type_name else None


def alias(view: VersionView, name: str, collection: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": encode_id("ArtifactAlias", f"{view.collection.id}:{name}"),
        "alias": name,
        "artifactCollection": collection,
    }


@field("Project", "artifactCollection")
def project_collection(obj: dict[str, Any], info: Any, name: str, **_: Any) -> Any:
    """A registry's collection or a source artifact (null if the caller may not see it)."""
    ctx = context(info)
    entity, project = obj["entityName"], obj["name"]
    try:
        if is_registry(project):
            if entity.lower() != ctx.actor.org_name.lower():
                return None
            registry = project[len(REGISTRY_PREFIX) :]
            found: CollectionView = ctx.service.get_collection(ctx.actor, registry, name)
        else:
            found = ctx.service.source_collection(ctx.actor, entity, project, name)
    except NotFound:
        return None
    return collection_of(ctx, found)


def collection_membership(obj: dict[str, Any], info: Any, aliasName: str, **_: Any) -> Any:  # noqa: N803
    """``artifactCollection(name).artifactMembership(aliasName)``: a version by
    alias or ``vN`` (``GetArtifactMembershipFileUrls``)."""
    ctx = context(info)
    project = obj["project"]
    view = lookup(ctx, project["entityName"], project["name"], f"{obj['name']}:{aliasName}")
    if view is None:
        return None
    return membership_of(ctx, view, source_view(ctx, view))


field("ArtifactPortfolio", "artifactMembership")(collection_membership)
field("ArtifactSequence", "artifactMembership")(collection_membership)


# -- manifest and file URLs --------------------------------------------------------------------
@field("Artifact", "currentManifest")
def current_manifest(obj: dict[str, Any], info: Any, **_: Any) -> dict[str, Any]:
    """The version's ``wandb_manifest.json`` behind a signed URL (``FetchArtifactManifest``)."""
    ctx = context(info)
    view: VersionView = obj["_view"]
    membership_id = ctx.service.readable_membership(ctx.actor, view.version_id, download=True)
    token = ctx.signer.sign(
        MANIFEST_PURPOSE, {"u": ctx.actor.user_id, "m": membership_id}, DOWNLOAD_TTL_S
    )
    url = ctx.url(f"/wandb/manifests/{token}")
    return {
        "id": encode_id("ArtifactManifest", view.version_id),
        "type": "FULL",
        "file": {
            "id": encode_id("File", f"{view.version_id}:{MANIFEST_NAME}"),
            "name": MANIFEST_NAME,
            "displayName": MANIFEST_NAME,
            "directUrl": url,
            "url": url,
            "mimetype": "application/json",
        },
    }


@field("Artifact", "files")
def artifact_files(obj: dict[str, Any], info: Any, **args: Any) -> dict[str, Any]:
    """The version's files with signed download URLs (``ArtifactFileUrls``),
    read through a collection the caller may download from."""
    ctx = context(info)
    view: VersionView = obj["_view"]
    membership_id = ctx.service.readable_membership(ctx.actor, view.version_id, download=True)
    return files_page(ctx, membership_id, view.version_id, **args)


@field("ArtifactCollectionMembership", "files")
def membership_files(obj: dict[str, Any], info: Any, **args: Any) -> dict[str, Any]:
    """The files of the version in this collection (``GetArtifactMembershipFileUrls``)."""
    view: VersionView = obj["_view"]
    return files_page(context(info), view.membership_id, view.version_id, **args)


def files_page(
    ctx: WandbContext,
    membership_id: int,
    version_id: int,
    names: list[str] | None = None,
    after: str | None = None,
    first: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    """One page of a version's files (sorted by path; the cursor is an offset)."""
    entries = sorted(ctx.service.files(ctx.actor, membership_id), key=lambda f: f.path)
    if names is not None:
        wanted = set(names)
        entries = [f for f in entries if f.path in wanted]
    start = 0
    if after:
        if not after.isdigit():
            raise InvalidRequest(f"{after!r} is not a cursor of this server")
        start = int(after)
    count = PER_PAGE if first is None else max(0, min(first, MAX_PER_PAGE))
    page = entries[start : start + count]
    end = start + len(page)
    return {
        "totalCount": len(entries),
        "pageInfo": {
            "endCursor": str(end),
            "hasNextPage": end < len(entries),
            "startCursor": str(start),
            "hasPreviousPage": start > 0,
        },
        "edges": [
            {"cursor": str(start + i + 1), "node": file_of(ctx, membership_id, version_id, f)}
            for i, f in enumerate(page)
        ],
    }


def file_of(
    ctx: WandbContext, membership_id: int, version_id: int, entry: FileEntry
) -> dict[str, Any]:
    token = ctx.signer.sign(
        FILE_PURPOSE,
        {"u": ctx.actor.user_id, "m": membership_id, "d": entry.digest},
        DOWNLOAD_TTL_S,
    )
    url = ctx.url(f"/wandb/files/{token}")
    service = ctx.service

    def md5(info: Any, **_: Any) -> str:
        return MD5.of(service, entry.digest)

    return {
        "id": encode_id("File", f"{version_id}:{entry.path}"),
        "name": entry.path,
        "displayName": entry.path,  # the client reads `name: displayName`
        "sizeBytes": entry.size,
        "digest": md5,  # W&B's file digest; computed only when asked for
        "md5": md5,
        "directUrl": url,
        "url": url,
        "storagePath": None,
        "mimetype": None,
        "updatedAt": None,
    }


# -- lineage -----------------------------------------------------------------------------------
@mutation("useArtifact")
def use_artifact(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``run.use_artifact(...)``: record that the run (``runName``, the run id
    ``wandb.init`` upserted) used the version, as Regalia's SDK does; it needs
    download rights (a restricted viewer is refused with Regalia's 403)."""
    ctx = context(info)
    version_id = decode_int_id(str(input["artifactID"]), "Artifact")
    membership_id = ctx.service.readable_membership(ctx.actor, version_id)
    ctx.service.use(ctx.actor, membership_id, str(input["runName"]))
    return {
        "artifact": artifact_of(ctx, ctx.service.version_by_id(ctx.actor, version_id)),
        "clientMutationId": input.get("clientMutationId"),
    }


@field("Artifact", "usedBy")
def used_by(obj: dict[str, Any], info: Any, **_: Any) -> dict[str, Any]:
    """The runs that used the version (``artifact.used_by()``; ``ArtifactUsedBy``)."""
    ctx = context(info)
    _logged, used = lineage_of(ctx, obj["_view"])
    return {"edges": [{"node": run_ref(ref)} for ref in used]}


@field("Artifact", "createdBy")
def created_by(obj: dict[str, Any], info: Any, **_: Any) -> dict[str, Any] | None:
    """The run that logged the version (``artifact.logged_by()``; ``ArtifactCreatedBy``)."""
    ctx = context(info)
    logged, _used = lineage_of(ctx, obj["_view"])
    return None if logged is None else run_ref(logged)


def lineage_of(ctx: WandbContext, view: VersionView) -> tuple[Any, list[Any]]:
    membership_id = ctx.service.readable_membership(ctx.actor, view.version_id)
    return ctx.service.run_lineage(ctx.actor, membership_id)


def run_ref(ref: tuple[int, str, str, str]) -> dict[str, Any]:
    """A run as the client names it (it then reads it with ``project.run(name)``)."""
    run_id, entity, project, key = ref
    return {
        "__typename": "Run",
        "id": encode_id("Run", run_id),
        "name": key,
        "displayName": None,
        "project": project_of(entity, project),
    }


# -- W&B digests -------------------------------------------------------------------------------
class Md5Cache:
    """W&B's file digest (base64 MD5) of each stored blob: the MD5 the store
    keeps beside its SHA-256 (``service.md5s``: recorded when the client
    uploaded it, else computed once from its bytes and recorded), remembered
    in this process too, for the ``size`` most recently used."""

    def __init__(self, size: int = 100_000) -> None:
        self._known: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def of(self, service: Service, digest: str) -> str:
        with self._lock:
            if digest in self._known:
                self._known.move_to_end(digest)
                return self._known[digest]
        value = base64.b64encode(bytes.fromhex(service.md5s([digest])[digest])).decode()
        with self._lock:
            self._known[digest] = value
            while len(self._known) > self._size:
                self._known.popitem(last=False)
        return value


MD5 = Md5Cache()


def manifest_of(service: Service, view: VersionView, files: list[FileEntry]) -> dict[str, Any]:
    """W&B's ``wandb_manifest.json`` of a version's files."""
    birth = encode_id("Artifact", view.version_id)
    return {
        "version": 1,
        "storagePolicy": "wandb-storage-policy-v1",
        "storagePolicyConfig": {"storageLayout": "V2"},
        "contents": {
            f.path: {"digest": MD5.of(service, f.digest), "size": f.size, "birthArtifactID": birth}
            for f in sorted(files, key=lambda f: f.path)
        },
    }


# -- the signed routes -------------------------------------------------------------------------
def _claims(request: Request, token: str, purpose: str) -> tuple[Service, Any, dict[str, Any]]:
    service: Service = request.app.state.service
    claims = signer_of(request).verify(token, purpose)
    actor = service.actor_of_user(int(claims["u"]))
    return service, actor, claims


@router.get("/wandb/files/{token}")
async def download_file(token: str, request: Request) -> Response:
    """A version's file by a URL from ``files { directUrl }`` (no credentials)."""

    def find() -> tuple[Service, str]:
        service, actor, claims = _claims(request, token, FILE_PURPOSE)
        entry = service.blob_for_download(actor, int(claims["m"]), str(claims["d"]))
        return service, entry.digest

    service, digest = await run_in_threadpool(find)
    return await run_in_threadpool(blob_response, service, digest)


@router.get("/wandb/manifests/{token}")
async def download_manifest(token: str, request: Request) -> Response:
    """A version's ``wandb_manifest.json`` by its ``currentManifest`` URL."""

    def render() -> bytes:
        service, actor, claims = _claims(request, token, MANIFEST_PURPOSE)
        membership_id = int(claims["m"])
        view = service.get_version(actor, membership_id)
        files = service.files(actor, membership_id)
        return json.dumps(manifest_of(service, view, files)).encode()

    body = await run_in_threadpool(render)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})
