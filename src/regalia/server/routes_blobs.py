"""File contents: which are missing, uploads (whole or in resumable parts), downloads.

Uploads stream to disk while being hashed, so the server's memory does not
grow with file size. Downloads are plain files with HTTP Range support.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, BinaryIO

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.types import Receive, Scope, Send

from regalia.blobs.base import STREAM_CHUNK, WHOLE_UPLOAD_MAX, validate_digest
from regalia.errors import (
    ContentMismatch,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
)
from regalia.server.deps import Caller, Svc, out
from regalia.server.jsonbody import StrictJsonRoute
from regalia.server.params import DIGEST_SCHEMA, Digest, Id, PartNumber
from regalia.server.responses import (
    Discarded,
    Missing,
    PartReceived,
    PartUrls,
    StoredContent,
    UploadProgress,
)
from regalia.server.schemas import DigestList, NewUpload, PartsToSend
from regalia.server.uploads import PART_SHA256_HEADER, UploadArea, UploadState, receive_file
from regalia.service import Service
from regalia.service.access import require_org_admin
from regalia.service.direct import DirectState

router = APIRouter(tags=["files"], route_class=StrictJsonRoute)
DOWNLOAD_CHUNK = 1024 * 1024


BINARY = {"schema": {"type": "string", "format": "binary"}}
OCTETS = "application/octet-stream"
# The bytes of a PUT are the content itself, not JSON.
RAW_BODY = {"requestBody": {"required": True, "content": {OCTETS: BINARY}}}
SHA256_HEADER = {
    "X-Regalia-Sha256": {"description": "the content's SHA-256", "schema": DIGEST_SCHEMA}
}
DOWNLOAD_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {OCTETS: BINARY}, "headers": SHA256_HEADER},
    206: {
        "description": "the requested range (several ranges: multipart/byteranges)",
        "content": {OCTETS: BINARY, "multipart/byteranges": BINARY},
        "headers": SHA256_HEADER,
    },
    416: {
        "description": "the range starts past the end of the content (Content-Range: bytes */size)",
        "content": {"text/plain": {"schema": {"type": "string", "maxLength": 0}}},
    },
}
RANGE_PARAMETER = {
    "name": "Range",
    "in": "header",
    "required": False,
    "description": "bytes=START-END, bytes=START- or bytes=-SUFFIX (RFC 9110); a retry "
    "resumes with bytes=N-",
    "schema": {"type": "string", "pattern": r"^bytes=(\d*-\d*)(, *\d*-\d*)*$"},
}


class BlobFile(FileResponse):
    chunk_size = DOWNLOAD_CHUNK

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        # Starlette answers a malformed Range with a text/plain 400; this API
        # answers every 400 with its error envelope.
        try:
            return super()._parse_range_header(http_range, file_size)
        except MalformedRangeHeader as exc:
            raise InvalidRequest(
                f"invalid Range header {http_range[:100]!r}: {exc.content}", rule="range"
            ) from None


def _uploads(request: Request) -> UploadArea:
    area: UploadArea = request.app.state.uploads
    return area


def counted_body(request: Request) -> AsyncIterator[bytes]:
    """The request's body, its bytes counted in the server's metrics."""
    counter = request.app.state.metrics.bytes_in

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                counter.inc(len(chunk))
                yield chunk

    return body()


def _state(state: UploadState | DirectState) -> dict[str, object]:
    return {
        "digest": state.digest,
        "size": state.size,
        "part_size": state.part_size,
        "part_count": state.part_count,
        "parts_received": state.parts_received,
        "stored": False,
        "direct": isinstance(state, DirectState),
    }


@router.post(
    "/blobs/missing",
    summary="Which of these SHA-256 digests the caller must upload",
    description="A content the caller neither sent (in the last 7 days) nor may download "
    "is reported missing whether or not it is stored: uploading it proves possession.",
    response_model=Missing,
)
def missing(body: DigestList, actor: Caller, svc: Svc) -> JSONResponse:
    return out({"missing": svc.missing_blobs(actor, body.digests)})


@router.put(
    "/blobs/{digest}",
    summary="Upload a whole content (up to 16 MiB or the part size; larger ones use /uploads)",
    description="The bytes are hashed as they arrive; the answer describes them (the same "
    "whether or not the store had the content) and lets the caller reference the content.",
    status_code=201,
    response_model=StoredContent,
    openapi_extra=RAW_BODY,
)
async def put_blob(digest: Digest, request: Request, actor: Caller, svc: Svc) -> JSONResponse:
    validate_digest(digest)
    area = _uploads(request)
    tmp = area.temp_path()
    try:
        blob = await receive_file(tmp, counted_body(request), max(area.part_size, WHOLE_UPLOAD_MAX))
        if blob.digest != digest:
            raise ContentMismatch(
                f"the uploaded content hashes to {blob.digest}, expected {digest}",
                expected=digest,
                actual=blob.digest,
            )
        if not tmp.exists():  # the body stalled so long that the sweep took the file
            raise InvalidRequest("the upload stalled and was dropped; send it again")
        stored = await run_in_threadpool(svc.adopt_blob, actor, tmp, blob)
    finally:
        tmp.unlink(missing_ok=True)
    return out({"digest": stored.digest, "size": stored.size, "check": stored.check}, 201)


@router.post(
    "/uploads",
    summary="Start or resume your resumable upload",
    description="Answers `stored: true` (nothing to send) only for content the caller may "
    "already reference; otherwise starts or resumes the caller's own upload.",
    response_model=UploadProgress,
)
def start_upload(body: NewUpload, request: Request, actor: Caller, svc: Svc) -> JSONResponse:
    validate_digest(body.digest)
    if svc.referenceable_contents(actor, [body.digest]):
        return out({"digest": body.digest, "size": body.size, "stored": True})
    if svc.direct is not None and body.size > 0:
        return out(_state(svc.begin_direct_upload(actor, body.digest, body.size)))
    return out(_state(_uploads(request).start(actor.user_id, body.digest, body.size)))


@router.get(
    "/uploads/{digest}",
    summary="Which parts of your upload arrived",
    response_model=UploadProgress,
)
def upload_state(digest: Digest, request: Request, actor: Caller, svc: Svc) -> JSONResponse:
    if svc.direct is not None:
        return out(_state(svc.direct_upload_state(actor, digest)))
    return out(_state(_uploads(request).state(actor.user_id, digest)))


@router.post(
    "/uploads/{digest}/parts",
    summary="URLs to send parts of your direct upload to (the bucket checks each part's SHA-256)",
    response_model=PartUrls,
)
def part_urls(digest: Digest, body: PartsToSend, actor: Caller, svc: Svc) -> JSONResponse:
    urls = svc.direct_part_urls(actor, digest, [(p.part, p.sha256) for p in body.parts])
    return out({"parts": [{"part": u.part, "url": u.url, "headers": u.headers} for u in urls]})


@router.put(
    "/uploads/{digest}/parts/{number}",
    summary="Send one part of your upload (verified against its declared SHA-256)",
    response_model=PartReceived,
    openapi_extra=RAW_BODY,
)
async def put_part(
    digest: Digest,
    number: PartNumber,
    request: Request,
    actor: Caller,
    part_sha256: Annotated[
        str,
        Header(
            alias=PART_SHA256_HEADER,
            pattern="^[0-9a-fA-F]{64}$",
            description="the part's SHA-256; a part that does not match is not received",
        ),
    ],
) -> JSONResponse:
    area = _uploads(request)
    written = await area.write_part(
        actor.user_id, digest, number, counted_body(request), part_sha256
    )
    return out({"part": number, "size": written})


@router.post(
    "/uploads/{digest}/complete",
    summary="Verify your whole upload and store it",
    status_code=201,
    response_model=StoredContent,
    responses={200: {"model": StoredContent, "description": "stored by an earlier complete"}},
)
def complete_upload(digest: Digest, request: Request, actor: Caller, svc: Svc) -> JSONResponse:
    area = _uploads(request)
    try:
        if svc.direct is not None:
            done = svc.complete_direct_upload(actor, digest)
            return out({"digest": done.digest, "size": done.size, "check": done.check}, 201)
        path, blob = area.complete(actor.user_id, digest)
    except NotFound:
        # A retried complete: the first one stored the content (and granted it),
        # or is storing it. Content the caller may not reference stays "not found".
        known = svc.stored_content(actor, validate_digest(digest))
        if known is not None:
            size, check = known
            return out({"digest": digest, "size": size, "check": check, "stored": True})
        if svc.direct is None and area.completing(actor.user_id, digest):
            raise StorageUnavailable(
                "this upload is being completed by another request; retry shortly"
            ) from None
        raise
    try:
        stored = svc.adopt_blob(actor, path, blob)
    finally:
        path.unlink(missing_ok=True)
    return out({"digest": stored.digest, "size": stored.size, "check": stored.check}, 201)


@router.delete(
    "/uploads/{digest}",
    summary="Abandon your upload (org admins: anyone's, with `user`)",
    response_model=Discarded,
)
def abandon_upload(
    digest: Digest,
    request: Request,
    actor: Caller,
    svc: Svc,
    user: Annotated[
        str | None, Query(description="whose upload to abandon (org admins only)")
    ] = None,
) -> JSONResponse:
    validate_digest(digest)
    owner = actor.user_id
    if user is not None and user.lower() != actor.name.lower():
        require_org_admin(actor, "abandon another user's upload")
        owner = svc.user_id(actor, user)
    if svc.direct is not None:
        discarded = svc.abandon_direct_upload(owner, digest)
    else:
        discarded = _uploads(request).discard(owner, digest)
    if not discarded:
        raise NotFound(f"no upload in progress for {digest}", digest=digest)
    return out({"discarded": digest})


@router.get(
    "/versions/{membership_id}/blobs/{digest}",
    summary="Download a file of a version (HTTP Range supported)",
    response_class=BlobFile,
    responses=DOWNLOAD_RESPONSES,
    openapi_extra={"parameters": [RANGE_PARAMETER]},
)
async def download(membership_id: Id, digest: Digest, actor: Caller, svc: Svc) -> Response:
    entry = await run_in_threadpool(svc.blob_for_download, actor, membership_id, digest)
    return await run_in_threadpool(blob_response, svc, entry.digest)


def blob_response(svc: Service, digest: str, filename: str | None = None) -> Response:
    """The content's bytes: with a bucket store, a redirect to a presigned URL
    (the server carries no bytes); else its file (a local store) or a stream
    from the store, HTTP Range answered either way."""
    url = svc.download_url(digest, filename)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    path = svc.blobs.local_path(digest)
    headers = {"X-Regalia-Sha256": digest, "Cache-Control": "private, max-age=31536000, immutable"}
    if path is not None:
        return BlobFile(path, media_type="application/octet-stream", headers=headers)
    return BlobStream(svc.blobs.open(digest), svc.blobs.size(digest), headers)


class BlobStream(Response):
    """A blob read from a store's stream, with HTTP Range: one range is answered
    206 from a seek; several are answered with the whole content (RFC 9110
    lets a server ignore Range); a start past the end is 416."""

    media_type = OCTETS

    def __init__(self, stream: BinaryIO, size: int, headers: dict[str, str]) -> None:
        super().__init__(status_code=200, headers=headers, media_type=OCTETS)
        self.stream, self.size = stream, size
        self.headers["accept-ranges"] = "bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start, end = 0, self.size
            http_range = Headers(scope=scope).get("range")
            if http_range is not None and scope["method"].upper() in ("GET", "HEAD"):
                try:
                    ranges = BlobFile._parse_range_header(http_range, self.size)
                except RangeNotSatisfiable:
                    await Response(
                        status_code=416, headers={"Content-Range": f"bytes */{self.size}"}
                    )(scope, receive, send)
                    return
                if len(ranges) == 1:
                    start, end = ranges[0]
                    self.status_code = 206
                    self.headers["content-range"] = f"bytes {start}-{end - 1}/{self.size}"
            self.headers["content-length"] = str(end - start)
            start_message = {
                "type": "http.response.start",
                "status": self.status_code,
                "headers": self.raw_headers,
            }
            await send(start_message)
            if scope["method"].upper() == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if start:
                await anyio.to_thread.run_sync(self.stream.seek, start)
            left = end - start
            while left > 0:
                chunk = await anyio.to_thread.run_sync(self.stream.read, min(STREAM_CHUNK, left))
                if not chunk:
                    raise StorageUnavailable(f"the blob ended {left} bytes early")
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if end == start:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await anyio.to_thread.run_sync(self.stream.close)
