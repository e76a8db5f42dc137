"""Logging and linking versions from the `wandb` client (``schema/log.graphql``).

``run.log_artifact(art)`` arrives as ``createArtifact`` (a draft, or the
existing version when the same files were logged before: the client then
sends nothing), ``createArtifactManifest``, ``createArtifactFiles`` (a signed
upload URL per file, or none for a content the caller may already reference),
the PUTs of the files and of ``wandb_manifest.json``, and ``commitArtifact``,
which is one :meth:`~regalia.service.Service.log_version`. ``run.link_artifact``
is ``linkArtifact``: :meth:`~regalia.service.Service.link` into the registry
``wandb-registry-<name>`` names. Whatever Regalia refuses (a role, a protected
alias, a type) is the service's own error, which the client reports and does
not retry.

The PUT routes take no credentials (the client sends none to upload URLs):
the URL's signature says who may send what, for which draft; the body is
hashed once as it arrives, SHA-256 (the content's identity), BLAKE3 (its
check) and MD5 (W&B's digest, which must be the one announced).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from regalia.core.jsonvalues import loads_strict
from regalia.core.names import REGISTRY_PREFIX, name_key
from regalia.errors import (
    ContentMismatch,
    InvalidRequest,
    RegistryNotFound,
    TooLarge,
)
from regalia.server.routes_blobs import counted_body
from regalia.server.uploads import UploadArea, receive_file
from regalia.server.wandb.ids import decode_int_id, encode_id
from regalia.server.wandb.objects import artifact_of, membership_of, timestamp
from regalia.server.wandb.resolvers import WandbContext, context, mutation
from regalia.server.wandb.signing import UPLOAD_TTL_S, signer_of
from regalia.service import Actor, Service
from regalia.service.views import VersionView
from regalia.service.wandb_uploads import Draft

router = APIRouter(include_in_schema=False)

FILE_PURPOSE = "wandb-artifact-file"
MANIFEST_PURPOSE = "wandb-artifact-manifest"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
LATEST = "latest"


# -- digests -----------------------------------------------------------------------------
def hex_md5(b64: str, what: str = "an MD5") -> str:
    """W&B's base64 MD5 as hex."""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != 16:
        raise InvalidRequest(f"{b64!r} is not {what} (base64 of 16 bytes)")
    return raw.hex()


def b64_md5(hex_: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_)).decode()


# -- objects ------------------------------------------------------------------------------
def draft_artifact(ctx: WandbContext, draft: Draft) -> dict[str, Any]:
    """A draft as the ``Artifact`` the client goes on with (state PENDING)."""
    sequence_key = f"{draft.entity}/{draft.project}/{draft.name}"
    return {
        "__typename": "Artifact",
        "id": encode_id("Artifact", draft.wire_id),
        "state": "PENDING",
        "digest": "",
        "artifactType": {"id": encode_id("ArtifactType", draft.type), "name": draft.type},
        "artifactSequence": {
            "__typename": "ArtifactSequence",
            "id": encode_id("ArtifactSequence", sequence_key),
            "name": draft.name,
            "description": None,
            "project": None,
            "createdAt": timestamp(ctx.service.now()),
            "updatedAt": None,
            "tags": {"edges": []},
        },
        "aliases": [],
        "tags": [],
    }


def _artifact_id(value: str | None) -> int:
    if not value:
        raise InvalidRequest("the artifact id is missing")
    return decode_int_id(value, "Artifact")


def _json_object(text: str | None, what: str) -> dict[str, Any] | None:
    if text is None or text == "":
        return None
    value = loads_strict(text, what)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value


# -- mutations ------------------------------------------------------------------------------
@mutation("createArtifact")
def create_artifact(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """Start logging a version (or answer the version the same files made)."""
    ctx = context(info)
    if input.get("distributedID"):
        raise InvalidRequest("distributed artifacts (several runs writing one) are not supported")
    aliases = [a["alias"] for a in input.get("aliases") or [] if a.get("alias")]
    tags = [t["tagName"] for t in input.get("tags") or [] if t.get("tagName")]
    name = input.get("artifactCollectionName") or ""
    result = ctx.service.create_wandb_draft(
        ctx.actor,
        entity=input["entityName"],
        project=input["projectName"],
        name=name,
        type=input["artifactTypeName"],
        digest=str(input.get("digest") or "").lower(),
        description=input.get("description"),
        metadata=_json_object(input.get("metadata"), "the artifact's metadata"),
        aliases=aliases,
        tags=tags,
        run_key=input.get("runName"),
    )
    if isinstance(result, VersionView):
        return {"artifact": artifact_of(ctx, result)}
    return {"artifact": draft_artifact(ctx, result)}


@mutation("createArtifactManifest")
def create_artifact_manifest(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """The manifest's upload URL (once the client knows the manifest's MD5)."""
    ctx = context(info)
    kind = input.get("type") or "FULL"
    if kind != "FULL":
        raise InvalidRequest(
            f"{kind.lower()} manifests are not supported; log the artifact whole "
            "(without incremental=True)"
        )
    wire_id = _artifact_id(input.get("artifactID"))
    draft = ctx.service.wandb_draft(ctx.actor, wire_id)
    digest = input.get("digest") or ""
    md5 = hex_md5(digest, "the manifest's MD5") if digest else ""
    token = ctx.signer.sign(
        MANIFEST_PURPOSE, {"u": ctx.actor.user_id, "a": draft.wire_id, "m": md5}, UPLOAD_TTL_S
    )
    manifest_id = encode_id("ArtifactManifest", draft.wire_id)
    return {
        "artifactManifest": {
            "id": manifest_id,
            "type": "FULL",
            "file": {
                "id": encode_id("File", f"{draft.wire_id}:wandb_manifest.json"),
                "name": "wandb_manifest.json",
                "displayName": "wandb_manifest.json",
                "uploadUrl": ctx.url(f"/wandb/artifact-manifests/{token}"),
                "uploadHeaders": [],
            },
        }
    }


@mutation("createArtifactFiles")
def create_artifact_files(
    info: Any,
    input: dict[str, Any],  # noqa: A002
) -> dict[str, Any]:
    """Where to send each file: a signed URL, or none for a content the store
    holds that the caller may reference."""
    ctx = context(info)
    specs = input.get("artifactFiles") or []
    by_draft: dict[int, dict[str, str]] = {}
    for spec in specs:
        wire_id = _artifact_id(spec.get("artifactID"))
        by_draft.setdefault(wire_id, {})[spec["name"]] = hex_md5(spec["md5"], "a file's MD5")
    upload: dict[int, set[str]] = {
        wire_id: ctx.service.wandb_files_to_upload(ctx.actor, wire_id, files)
        for wire_id, files in by_draft.items()
    }
    edges = []
    for spec in specs:
        wire_id = _artifact_id(spec.get("artifactID"))
        path = spec["name"]
        md5 = by_draft[wire_id][path]
        url = None
        if path in upload[wire_id]:
            token = ctx.signer.sign(
                FILE_PURPOSE,
                {"u": ctx.actor.user_id, "a": wire_id, "n": path, "m": md5},
                UPLOAD_TTL_S,
            )
            url = ctx.url(f"/wandb/artifact-files/{token}")
        edges.append(
            {
                "node": {
                    "id": encode_id("File", f"{wire_id}:{path}"),
                    "name": path,
                    "displayName": path.split("/")[-1],
                    "md5": spec["md5"],
                    "storagePath": f"{wire_id}/{md5}",
                    "uploadUrl": url,
                    "uploadHeaders": [],
                    "uploadMultipartUrls": None,
                    "artifact": {"id": encode_id("Artifact", wire_id)},
                }
            }
        )
    return {
        "files": {
            "totalCount": len(edges),
            "pageInfo": {"hasNextPage": False, "hasPreviousPage": False},
            "edges": edges,
        }
    }


@mutation("commitArtifact")
def commit_artifact(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """Log the draft as a version (:meth:`Service.log_version`, once)."""
    ctx = context(info)
    wire_id = _artifact_id(input.get("artifactID"))
    view = ctx.service.commit_wandb_draft(ctx.actor, wire_id)
    return {"artifact": artifact_of(ctx, view)}


def registry_of(project_name: str | None) -> str:
    """The registry a W&B project ``wandb-registry-<name>`` names (any case)."""
    project_name = project_name or ""
    if not project_name.lower().startswith(REGISTRY_PREFIX):
        raise InvalidRequest(
            f"link into a registry: the project must be '{REGISTRY_PREFIX}<registry>', "
            f"not {project_name!r}"
        )
    return project_name[len(REGISTRY_PREFIX) :]


@mutation("linkArtifact")
def link_artifact(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """Link a version into a registry collection (:meth:`Service.link`)."""
    ctx = context(info)
    registry = registry_of(input.get("projectName"))
    entity = input.get("entityName")
    if entity and name_key(entity) != name_key(ctx.actor.org_name):
        raise RegistryNotFound(
            f"registries live in the organization's entity {ctx.actor.org_name!r}, not {entity!r}",
            registry=registry,
        )
    collection = input.get("artifactPortfolioName")
    if not collection:
        raise InvalidRequest("linkArtifact needs artifactPortfolioName (the collection)")
    if not input.get("artifactID"):
        raise InvalidRequest("linkArtifact needs the artifactID of a logged version")
    source = ctx.service.version_by_id(ctx.actor, _artifact_id(input["artifactID"]))
    aliases = [
        a["alias"]
        for a in input.get("aliases") or []
        if a.get("alias") and name_key(a["alias"]) != LATEST
    ]
    linked = ctx.service.link(
        ctx.actor, source.membership_id, f"{REGISTRY_PREFIX}{registry}/{collection}", aliases
    )
    return {
        "versionIndex": linked.index,
        "artifactMembership": membership_of(ctx, linked, source),
    }


# -- the PUT routes --------------------------------------------------------------------------
@router.put("/wandb/artifact-files/{token}")
async def put_artifact_file(token: str, request: Request) -> Response:
    """The bytes of one file of a draft (the URL ``createArtifactFiles`` signed)."""
    claims = signer_of(request).verify(token, FILE_PURPOSE)
    service: Service = request.app.state.service
    actor: Actor = await run_in_threadpool(service.uploader, int(claims["u"]))
    wire_id, path, md5 = int(claims["a"]), str(claims["n"]), str(claims["m"])
    await run_in_threadpool(service.wandb_draft, actor, wire_id)  # still theirs
    area: UploadArea = request.app.state.uploads
    tmp = area.temp_path()
    try:
        hasher = hashlib.md5(usedforsecurity=False)
        blob = await receive_file(tmp, counted_body(request), None, also=hasher)
        got = hasher.hexdigest()
        if got != md5:
            raise ContentMismatch(
                f"file {path!r}: the bytes received have MD5 {b64_md5(got)}; "
                f"the upload URL was issued for {b64_md5(md5)}",
                expected=b64_md5(md5),
                actual=b64_md5(got),
            )
        await run_in_threadpool(service.receive_wandb_file, actor, wire_id, path, md5, tmp, blob)
    finally:
        tmp.unlink(missing_ok=True)
    return Response(status_code=200, headers={"ETag": f'"{md5}"'})


@router.put("/wandb/artifact-manifests/{token}")
async def put_artifact_manifest(token: str, request: Request) -> Response:
    """A draft's ``wandb_manifest.json`` (the URL ``createArtifactManifest`` signed)."""
    claims = signer_of(request).verify(token, MANIFEST_PURPOSE)
    service: Service = request.app.state.service
    actor: Actor = await run_in_threadpool(service.uploader, int(claims["u"]))
    wire_id, md5 = int(claims["a"]), str(claims["m"])
    raw = b""
    async for chunk in counted_body(request):
        raw += chunk
        if len(raw) > MAX_MANIFEST_BYTES:
            raise TooLarge(
                f"a manifest is at most {MAX_MANIFEST_BYTES} bytes", limit=MAX_MANIFEST_BYTES
            )
    got = hashlib.md5(raw, usedforsecurity=False).hexdigest()
    if md5 and got != md5:
        raise ContentMismatch(
            f"the manifest received has MD5 {b64_md5(got)}; the upload URL was issued "
            f"for {b64_md5(md5)}",
            expected=b64_md5(md5),
            actual=b64_md5(got),
        )
    files, references = parse_manifest(raw)
    await run_in_threadpool(service.set_wandb_manifest, actor, wire_id, files, references)
    return Response(status_code=200, headers={"ETag": f'"{got}"'})


def parse_manifest(raw: bytes) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """path -> (hex MD5, size) of the files of a ``wandb_manifest.json`` (version
    1), and the paths of its references (``ref`` entries, which Regalia does not
    keep: it stores the files themselves)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise InvalidRequest("the manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise InvalidRequest("the manifest is not a W&B manifest of version 1")
    contents = doc.get("contents")
    if not isinstance(contents, dict):
        raise InvalidRequest("the manifest has no 'contents' object")
    files: dict[str, tuple[str, int]] = {}
    references: list[str] = []
    for path, entry in contents.items():
        if not isinstance(entry, dict):
            raise InvalidRequest(f"manifest entry {path!r} is not an object")
        if entry.get("ref"):
            references.append(path)
            continue
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise InvalidRequest(f"manifest entry {path!r} has no size", path=path)
        files[path] = (hex_md5(str(entry.get("digest")), f"the MD5 of {path!r}"), size)
    return files, references
