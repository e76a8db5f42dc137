"""Moving file contents to and from a server, streamed, resumable, verified.

Upload: hash every file locally (SHA-256, its identity, and the BLAKE3 check),
ask the server which contents to send (those it lacks, and those this user may
not read: stored by someone else, they must be sent to be referenced), and
send only those, several at once. A small content goes in one request; a
large one goes in parts, each declaring its SHA-256 in
``X-Regalia-Part-Sha256`` (the upload belongs to this user, and the server
keeps the parts it received, so a retry, even from a new process, sends only
the missing ones). The server re-hashes what it received before storing it,
and the client compares the server's digests with its own.

Download: :class:`RemoteBlobs` gives the download cache a stream of the
content fetched in ranges of :data:`DOWNLOAD_RANGE` bytes,
:data:`DOWNLOAD_PARALLEL` in flight and delivered in order (from the bucket's
presigned URL when the server redirects there, else from the server); a
broken range is resumed where it broke, and the cache verifies the bytes by
their check. A server that answers no ``Range`` gets one resuming stream.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx

from regalia.blobs.base import WHOLE_UPLOAD_MAX, ProgressSink, StoredBlob, StreamHasher
from regalia.errors import (
    FileChanged,
    FileMissing,
    IntegrityError,
    InvalidRequest,
    ServerUnreachable,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from regalia.sdk.http import HttpBackend

READ_CHUNK = 1024 * 1024
PARALLEL = 4
DIRECT_PARALLEL = 8
PART_SHA256_HEADER = "X-Regalia-Part-Sha256"
PART_RETRIES = 4
COMPLETE_ROUNDS = 3
"""Times an upload sends what its completion reports missing, then completes."""
REDIRECTS = {302, 303, 307, 308}
DOWNLOAD_RANGE = 8 * 1024 * 1024
"""Bytes per ranged GET of a download (boto3's default chunk too)."""
DOWNLOAD_PARALLEL = 8
"""Ranged GETs of one download in flight (memory: about this many ranges)."""
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


class Uploader:
    def __init__(self, backend: HttpBackend, parallel: int = PARALLEL) -> None:
        self.backend = backend
        self.parallel = parallel

    def upload(self, paths: Sequence[Path], progress: ProgressSink | None) -> list[StoredBlob]:
        """Store ``paths`` on the server; return their digests, in order."""
        workers = max(1, min(self.parallel, len(paths)))
        with ThreadPoolExecutor(workers) as pool:
            local = list(pool.map(hash_local, paths))
        missing = set(
            self.backend.call(
                "POST",
                "/blobs/missing",
                json={"digests": [b.digest for b in local]},
                idempotent=True,
            )["missing"]
        )
        todo: dict[str, tuple[Path, StoredBlob]] = {}
        for path, blob in zip(paths, local, strict=True):
            if blob.digest in missing:
                todo.setdefault(blob.digest, (path, blob))
            elif progress is not None:
                progress.advance(blob.size)
        with ThreadPoolExecutor(max(1, min(self.parallel, len(todo)))) as pool:
            list(pool.map(lambda item: self.send(item[0], item[1], progress), todo.values()))
        return local

    def send(self, path: Path, blob: StoredBlob, progress: ProgressSink | None) -> None:
        if blob.size <= WHOLE_UPLOAD_MAX:
            got = self.backend.call(
                "PUT",
                f"/blobs/{blob.digest}",
                content=_FileRange(path, 0, blob.size, progress),
                headers={"Content-Length": str(blob.size)},
            )
        else:
            got = self.send_parts(path, blob, progress)
        if got.get("stored"):
            return
        if got["digest"] != blob.digest or got["size"] != blob.size or got["check"] != blob.check:
            raise IntegrityError(
                f"the server stored {got} for {path}, which hashes to {tuple(blob)} here",
                path=str(path),
            )

    def send_parts(
        self, path: Path, blob: StoredBlob, progress: ProgressSink | None
    ) -> dict[str, Any]:
        """A resumable upload: only the parts the server lacks are sent."""
        state = self.backend.call(
            "POST", "/uploads", json={"digest": blob.digest, "size": blob.size}, idempotent=True
        )
        if state.get("stored"):
            if progress is not None:
                progress.advance(blob.size)
            return dict(state)
        size, part_size = blob.size, int(state["part_size"])
        received = set(state["parts_received"])
        for n in received:
            if progress is not None:
                progress.advance(min(part_size, size - n * part_size))
        todo = [n for n in range(int(state["part_count"])) if n not in received]

        direct = bool(state.get("direct"))

        def one(n: int) -> None:
            start = n * part_size
            length = min(part_size, size - start)
            # A part that is the whole content hashes to its digest, known already.
            declared = blob.digest if length == size else part_sha256(path, start, length)
            if direct:
                self.send_direct(
                    blob.digest, n, declared, _FileRange(path, start, length, progress)
                )
                return
            self.backend.call(
                "PUT",
                f"/uploads/{blob.digest}/parts/{n}",
                content=_FileRange(path, start, length, progress),
                headers={
                    "Content-Length": str(length),
                    PART_SHA256_HEADER: declared,
                },
            )

        # Straight to the bucket, more parts in flight: the server is not in the path.
        parallel = DIRECT_PARALLEL if direct else self.parallel
        for round_ in range(COMPLETE_ROUNDS):
            with ThreadPoolExecutor(max(1, min(parallel, len(todo)))) as pool:
                list(pool.map(one, todo))
            try:
                done: dict[str, Any] = self.backend.call(
                    "POST", f"/uploads/{blob.digest}/complete", idempotent=True
                )
                return done
            except InvalidRequest as exc:
                # Parts lost since they were sent (another upload of the same
                # content replaced a whole PUT, the bucket dropped a part): again.
                missing = exc.details.get("missing_parts")
                if not missing or round_ == COMPLETE_ROUNDS - 1:
                    raise
                todo = [int(n) for n in missing]
        raise AssertionError("unreachable")

    def send_direct(self, digest: str, n: int, declared: str, body: _FileRange) -> None:
        """Send part ``n`` straight to the bucket, at the URL the server signs
        for its SHA-256 (no credentials go with it); a broken connection is
        retried with a fresh URL."""
        for attempt in range(PART_RETRIES + 1):
            (signed,) = self.backend.call(
                "POST",
                f"/uploads/{digest}/parts",
                json={"parts": [{"part": n, "sha256": declared}]},
                idempotent=True,
            )["parts"]
            headers = {**signed["headers"], "Content-Length": str(body.length)}
            request = httpx.Request("PUT", signed["url"], headers=headers, content=body)
            try:
                with self.backend.transport_errors():
                    response = self.backend.client.send(request)
            except ServerUnreachable:
                if attempt == PART_RETRIES:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** (attempt + 1)))
                continue
            if response.status_code < 300:
                return
            text = response.text[:300]
            if "BadDigest" in text or "Mismatch" in text:
                raise FileChanged(
                    f"part {n} of {body.path} changed while it was sent (the bucket refused it)",
                    path=str(body.path),
                )
            if response.status_code >= 500 and attempt < PART_RETRIES:
                time.sleep(min(2.0, 0.05 * 2 ** (attempt + 1)))
                continue
            raise StorageUnavailable(
                f"the bucket refused part {n} of {body.path}: HTTP {response.status_code} {text}"
            )


def part_sha256(path: Path, start: int, length: int) -> str:
    """SHA-256 of ``length`` bytes of ``path`` from ``start``: the hash a part
    declares, so the server counts it only if the bytes it got match."""
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        left = length
        while left:
            chunk = f.read(min(READ_CHUNK, left))
            if not chunk:
                raise FileChanged(f"file {path} got shorter during upload")
            hasher.update(chunk)
            left -= len(chunk)
    return hasher.hexdigest()


class _FileRange:
    """A part of a file as a request body, read in chunks (constant memory).

    Iterated again on a retry, it starts over from its first byte.
    """

    def __init__(self, path: Path, start: int, length: int, progress: ProgressSink | None):
        self.path, self.start, self.length, self.progress = path, start, length, progress

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        with self.path.open("rb") as f:
            f.seek(self.start)
            while sent < self.length:
                chunk = f.read(min(READ_CHUNK, self.length - sent))
                if not chunk:
                    raise FileChanged(f"file {self.path} got shorter during upload")
                sent += len(chunk)
                if self.progress is not None:
                    self.progress.advance(len(chunk))
                yield chunk


def hash_local(path: Path) -> StoredBlob:
    """SHA-256 and BLAKE3 of a local file, read once."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise FileMissing(f"no such file: {str(path)!r}", path=str(path)) from None
    with f, StreamHasher() as hasher:
        before = os.fstat(f.fileno())
        while chunk := f.read(READ_CHUNK):
            hasher.update(chunk)
        digest, check = hasher.digests()
        after = os.fstat(f.fileno())
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or (
        hasher.size != after.st_size
    ):
        raise FileChanged(f"file {str(path)!r} changed while it was read", path=str(path))
    assert check is not None
    return StoredBlob(digest, hasher.size, check)


class RemoteBlobs:
    """The contents of one version on a server, as the download cache reads them."""

    def __init__(self, backend: HttpBackend, membership_id: int) -> None:
        self.backend = backend
        self.membership_id = membership_id

    def local_path(self, digest: str) -> Path | None:
        return None

    def open(self, digest: str) -> BinaryIO:
        url = f"/api/v1/versions/{self.membership_id}/blobs/{digest}"
        return _RangedReader(self.backend, url)  # type: ignore[return-value]


class _RangedReader(io.RawIOBase):
    """A download as a file, fetched in ranges, several in flight, read in order.

    The first range tells the size (``Content-Range``) and, if the server
    redirects, the presigned URL the other ranges go to (fetched again when
    it has expired). A server that answers the first range with the whole
    content (no ``Range`` support) or 416 (an empty content) is read as one
    resuming stream instead (:class:`_ResumingReader`).
    """

    def __init__(self, backend: HttpBackend, url: str) -> None:
        super().__init__()
        self.backend = backend
        self.url = url
        self._location: str | None = None
        self._size: int | None = None
        self._scheduled = 0
        self._window: deque[Future[bytes]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._buffer = b""
        self._stream: _ResumingReader | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._stream is not None:
            return self._stream.read(size)
        if self._size is None:
            self._first()
            if self._stream is not None:
                return self._stream.read(size)
        if not self._buffer:
            if not self._window:
                return b""
            self._buffer = self._window.popleft().result()
            self._schedule()
        if size < 0 or size >= len(self._buffer):
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def _first(self) -> None:
        first = self._fetch(0, DOWNLOAD_RANGE - 1, first=True)
        if first is None:  # no ranges here: one stream
            self._stream = _ResumingReader(self.backend, self.url)
            return
        self._buffer, self._size = first
        self._scheduled = len(self._buffer)
        if self._scheduled < self._size:
            self._pool = ThreadPoolExecutor(DOWNLOAD_PARALLEL, thread_name_prefix="regalia-get")
            self._schedule()

    def _schedule(self) -> None:
        assert self._size is not None
        while self._pool is not None and (
            len(self._window) < DOWNLOAD_PARALLEL and self._scheduled < self._size
        ):
            start = self._scheduled
            end = min(start + DOWNLOAD_RANGE, self._size) - 1
            self._window.append(self._pool.submit(self._range, start, end))
            self._scheduled = end + 1

    def _range(self, start: int, end: int) -> bytes:
        got = self._fetch(start, end)
        assert got is not None
        return got[0]

    def _fetch(self, start: int, end: int, *, first: bool = False) -> tuple[bytes, int] | None:
        """Bytes ``start..end`` and the content's size, resumed where a broken
        connection left them; None if ``first`` and the server sends no range."""
        pieces: list[bytes] = []
        at, failures, total = start, 0, 0
        while at <= end:
            try:
                response = self._send(at, end)
                try:
                    if first and response.status_code != 206:
                        return None
                    found = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                    if response.status_code != 206 or found is None or int(found[1]) != at:
                        raise ServerUnreachable(
                            f"download of {self.url}: asked for bytes {at}-{end}, got HTTP "
                            f"{response.status_code} {response.headers.get('content-range')}"
                        )
                    total = int(found[3])
                    end = min(end, total - 1)
                    for chunk in response.iter_raw(READ_CHUNK):
                        pieces.append(chunk)
                        at += len(chunk)
                        failures = 0  # progress: the retry budget is per break
                finally:
                    response.close()
            except httpx.TransportError as exc:
                failures += 1
                if failures > PART_RETRIES:
                    raise ServerUnreachable(
                        f"download of {self.url} failed at byte {at}: {exc}"
                    ) from None
                time.sleep(min(2.0, 0.05 * 2**failures))
        if at != end + 1:
            raise ServerUnreachable(f"download of {self.url}: bytes {start}-{end} came short")
        return b"".join(pieces), total

    def _send(self, start: int, end: int) -> httpx.Response:
        """A streamed ranged GET (the caller closes it): to the presigned URL
        once known, asking the server again if it has expired."""
        from regalia.sdk.http import error_of

        headers = {"Range": f"bytes={start}-{end}"}
        client = self.backend.client
        for _ in range(2):
            location = self._location
            if location is None:
                response = client.send(
                    client.build_request("GET", self.url, headers=headers), stream=True
                )
                if response.status_code not in REDIRECTS or "location" not in response.headers:
                    if response.status_code >= 400 and response.status_code != 416:
                        response.read()
                        response.close()
                        raise self.backend.explained(error_of(response))
                    return response
                location = self._location = response.headers["location"]
                response.close()
            response = client.send(httpx.Request("GET", location, headers=headers), stream=True)
            if response.status_code < 400 or response.status_code == 416:
                return response
            text = response.read()[:300].decode(errors="replace")
            response.close()
            if response.status_code == 403 and self._location == location:
                self._location = None  # expired: the server signs a new one
                continue
            raise StorageUnavailable(
                f"the bucket refused the download: HTTP {response.status_code} {text}"
            )
        raise StorageUnavailable(f"the bucket refused the download of {self.url} twice (HTTP 403)")

    def close(self) -> None:
        if self._pool is not None:
            for pending in self._window:
                pending.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._window.clear()
        if self._stream is not None:
            self._stream.close()
        super().close()


class _ResumingReader(io.RawIOBase):
    """A download as a file: a broken connection is resumed from the current
    offset with ``Range: bytes=N-`` (a few times, with backoff)."""

    def __init__(self, backend: HttpBackend, url: str) -> None:
        super().__init__()
        self.backend = backend
        self.url = url
        self.offset = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._pending = b""

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        from regalia.sdk.http import error_of

        headers = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        request = self.backend.client.build_request("GET", self.url, headers=headers)
        response = self.backend.client.send(request, stream=True)
        if response.status_code in REDIRECTS and "location" in response.headers:
            # The server's store is a bucket: it answered with a presigned URL,
            # which authorizes itself (no credentials are sent there).
            location = response.headers["location"]
            response.close()
            response = self.backend.client.send(
                httpx.Request("GET", location, headers=headers), stream=True
            )
            if response.status_code >= 400:
                text = response.read()[:300].decode(errors="replace")
                response.close()
                raise StorageUnavailable(
                    f"the bucket refused the download: HTTP {response.status_code} {text}"
                )
        if response.status_code >= 400:
            response.read()
            response.close()
            raise self.backend.explained(error_of(response))
        if self.offset and response.status_code != 206:
            response.close()
            raise ServerUnreachable("the server does not resume downloads (no Range support)")
        self._response = response
        self._chunks = response.iter_raw(READ_CHUNK)

    def read(self, size: int = -1) -> bytes:
        while True:
            try:
                if self._pending:
                    out = self._pending if size < 0 else self._pending[:size]
                    self._pending = self._pending[len(out) :]
                    self.offset += len(out)
                    self.failures = 0  # progress: the retry budget is per break
                    return out
                if self._chunks is None:
                    self._open()
                assert self._chunks is not None
                chunk = next(self._chunks, b"")
                if not chunk:
                    return b""
                self._pending = chunk
            except httpx.TransportError as exc:
                self._drop()
                self.failures += 1
                if self.failures > PART_RETRIES:
                    raise ServerUnreachable(
                        f"download of {self.url} failed at byte {self.offset}: {exc}"
                    ) from None
                time.sleep(min(2.0, 0.05 * 2**self.failures))

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
        self._response = None
        self._chunks = None
        self._pending = b""

    def close(self) -> None:
        self._drop()
        super().close()
