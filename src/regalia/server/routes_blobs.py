"""File contents: which are missing, uploads (whole or in resumable parts), downloads.

Uploads stream to disk while being hashed, so the server's memory does not
grow with file size. Downloads are plain files with HTTP Range support.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from regalia.blobs.base import STREAM_CHUNK, WHOLE_UPLOAD_MAX, validate_digest
from regalia.errors import ContentMismatch, NotFound, StorageUnavailable
from regalia.server.deps import Caller, Svc, out
from regalia.server.jsonbody import StrictJsonRoute
from regalia.server.schemas import DigestList, NewUpload
from regalia.server.uploads import UploadArea, UploadState, receive_file
from regalia.service import Service
from regalia.service.access import require_org_admin

router = APIRouter(tags=["files"], route_class=StrictJsonRoute)
DOWNLOAD_CHUNK = 1024 * 1024


class BlobFile(FileResponse):
    chunk_size = DOWNLOAD_CHUNK


def _uploads(request: Request) -> UploadArea:
    area: UploadArea = request.app.state.uploads
    return area


def _counted(request: Request) -> AsyncIterator[bytes]:
    counter = request.app.state.metrics.bytes_in

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                counter.inc(len(chunk))
                yield chunk

    return body()


def _state(state: UploadState) -> dict[str, object]:
    return {
        "digest": state.digest,
        "size": state.size,
        "part_size": state.part_size,
        "part_count": state.part_count,
        "parts_received": state.parts_received,
        "stored": False,
    }


@router.post("/blobs/missing", summary="Which of these SHA-256 digests the store lacks")
def missing(body: DigestList, actor: Caller, svc: Svc) -> JSONResponse:
    return out({"missing": svc.missing_blobs(actor, body.digests)})


@router.put(
    "/blobs/{digest}",
    summary="Upload a whole content (up to 16 MiB or the part size; larger ones use /uploads)",
)
async def put_blob(digest: str, request: Request, actor: Caller, svc: Svc) -> JSONResponse:
    validate_digest(digest)
    area = _uploads(request)
    tmp = area.temp_path()
    try:
        blob = await receive_file(tmp, _counted(request), max(area.part_size, WHOLE_UPLOAD_MAX))
        if blob.digest != digest:
            raise ContentMismatch(
                f"the uploaded content hashes to {blob.digest}, expected {digest}",
                expected=digest,
                actual=blob.digest,
            )
        stored = await run_in_threadpool(svc.adopt_blob, tmp, blob)
    finally:
        tmp.unlink(missing_ok=True)
    return out({"digest": stored.digest, "size": stored.size, "check": stored.check}, 201)


@router.post("/uploads", summary="Start or resume a resumable upload")
def start_upload(body: NewUpload, request: Request, actor: Caller, svc: Svc) -> JSONResponse:
    validate_digest(body.digest)
    if svc.blobs.has(body.digest):
        return out({"digest": body.digest, "size": body.size, "stored": True})
    return out(_state(_uploads(request).start(body.digest, body.size)))


@router.get("/uploads/{digest}", summary="Which parts of an upload arrived")
def upload_state(digest: str, request: Request, actor: Caller) -> JSONResponse:
    return out(_state(_uploads(request).state(digest)))


@router.put("/uploads/{digest}/parts/{number}", summary="Send one part (verified by its SHA-256)")
async def put_part(
    digest: str,
    number: int,
    request: Request,
    actor: Caller,
    part_sha256: Annotated[str | None, Header(alias="X-Regalia-Part-Sha256")] = None,
) -> JSONResponse:
    written = await _uploads(request).write_part(digest, number, _counted(request), part_sha256)
    return out({"part": number, "size": written})


@router.post("/uploads/{digest}/complete", summary="Verify the whole content and store it")
def complete_upload(digest: str, request: Request, actor: Caller, svc: Svc) -> JSONResponse:
    area = _uploads(request)
    try:
        path, blob = area.complete(digest)
    except NotFound:
        # A retried complete: the first one stored the content, or is storing it.
        if svc.blobs.has(validate_digest(digest)):
            size, check = svc.known_check(digest)
            return out({"digest": digest, "size": size, "check": check, "stored": True})
        if area.completing(digest):
            raise StorageUnavailable(
                "this upload is being completed by another request; retry shortly"
            ) from None
        raise
    try:
        stored = svc.adopt_blob(path, blob)
    finally:
        path.unlink(missing_ok=True)
    return out({"digest": stored.digest, "size": stored.size, "check": stored.check}, 201)


@router.delete("/uploads/{digest}", summary="Abandon an upload (org admins)")
def abandon_upload(digest: str, request: Request, actor: Caller) -> JSONResponse:
    # Uploads are shared by everyone sending the same content: only an admin
    # may throw one away (others' parts included).
    require_org_admin(actor, "abandon uploads")
    _uploads(request).discard(digest)
    return out({"discarded": digest})


@router.get(
    "/versions/{membership_id}/blobs/{digest}",
    summary="Download a file of a version (HTTP Range supported)",
    response_class=Response,
)
async def download(membership_id: int, digest: str, actor: Caller, svc: Svc) -> Response:
    entry = await run_in_threadpool(svc.blob_for_download, actor, membership_id, digest)
    return await run_in_threadpool(blob_response, svc, entry.digest)


def blob_response(svc: Service, digest: str) -> Response:
    path = svc.blobs.local_path(digest)
    headers = {"X-Regalia-Sha256": digest, "Cache-Control": "private, max-age=31536000, immutable"}
    if path is not None:
        return BlobFile(path, media_type="application/octet-stream", headers=headers)
    stream = svc.blobs.open(digest)

    def chunks() -> Iterator[bytes]:
        with stream:
            while chunk := stream.read(STREAM_CHUNK):
                yield chunk

    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
