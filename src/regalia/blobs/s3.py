"""A blob store in an S3 bucket: ``<prefix>/blobs/<d[:2]>/<d[2:4]>/<digest>``.

Any S3-compatible service works (AWS S3, SeaweedFS, MinIO, Ceph RGW...).

Every byte sent carries the SHA-256 it had when it was hashed: a small file
goes up in one PUT with ``x-amz-checksum-sha256`` set to the blob's digest, a
large one in parts, each with the SHA-256 computed in the same read pass as
the blob's digest. The store refuses a body that does not match (the file
changed after it was hashed): that is reported as
:class:`~regalia.errors.FileChanged` and nothing is kept. An object appears
under its content key only once its upload completes, so there are no
temporary keys; a failed multipart upload is aborted.

Example::

    store = S3BlobStore("models", "regalia/prod")
    blob = store.put_file(Path("weights.safetensors"))
    with store.open(blob.digest) as f:
        f.seek(1024)
        header = f.read(16)
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import quote

from regalia.blobs.base import (
    HASH_CHUNK,
    STREAM_CHUNK,
    BlobInfo,
    ProgressSink,
    StoredBlob,
    StreamHasher,
    _HashRelay,
    validate_digest,
    write_all,
)
from regalia.blobs.local import _check_unchanged, _open_source
from regalia.errors import (
    FileChanged,
    IntegrityError,
    NotFound,
    RegaliaError,
    StorageUnavailable,
)

MiB = 1 << 20
DEFAULT_PART_SIZE = 64 * MiB
"""Bytes per part of a multipart upload; files up to this size go in one PUT."""
MIN_PART_SIZE = 5 * MiB
"""The smallest part S3 accepts (but for the last one)."""
MAX_PARTS = 10_000
"""The most parts S3 accepts in one upload (larger files get larger parts)."""
DEFAULT_WORKERS = 8
"""Parts sent at once by one upload (the client's connection pool must be as large)."""
READ_BUFFER = 1 * MiB
"""Read buffer of :meth:`S3BlobStore.open` streams."""

_DIGEST_NAME = re.compile(r"[0-9a-f]{64}")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_CHANGED = {"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"}


class _Part(NamedTuple):
    number: int  # 1-based, as S3 counts
    offset: int
    size: int
    sha256: bytes  # raw digest


class S3BlobStore:
    """:class:`~regalia.blobs.base.BlobStore` over the objects of an S3 bucket.

    Args:
        bucket: the bucket (it must exist).
        prefix: a key prefix the store keeps to (``""``: the bucket's root).
        client: a boto3 S3 client; by default one from :func:`make_s3_client`.
        part_size: bytes per part of multipart uploads (at least 5 MiB on AWS).
        workers: parts sent in parallel by one upload.
        tmp_dir: where :meth:`put_stream` spools a stream before sending it
            (default: the system's temporary folder).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        part_size: int = DEFAULT_PART_SIZE,
        workers: int = DEFAULT_WORKERS,
        tmp_dir: Path | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"not a bucket name: {bucket!r}")
        self.bucket = bucket
        self.prefix = "/".join(p for p in prefix.split("/") if p)
        self.client = client if client is not None else make_s3_client()
        self.part_size = int(part_size)
        self.workers = max(1, int(workers))
        self.tmp_dir = tmp_dir
        self._blobs_prefix = f"{self.prefix}/blobs/" if self.prefix else "blobs/"

    def __repr__(self) -> str:
        return f"S3BlobStore({self.url!r}, endpoint={self.endpoint!r})"

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``: the store's ``REGALIA_BLOB_URL``."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def endpoint(self) -> str:
        """The endpoint the client talks to."""
        return str(getattr(self.client.meta, "endpoint_url", "") or "")

    def key(self, digest: str) -> str:
        """The object key of the blob with this digest (whether or not it exists)."""
        validate_digest(digest)
        return f"{self._blobs_prefix}{digest[:2]}/{digest[2:4]}/{digest}"

    # -- reads -----------------------------------------------------------------------
    def has(self, digest: str) -> bool:
        """Whether the blob is stored (a HEAD request)."""
        try:
            self._head(digest)
        except NotFound:
            return False
        return True

    def size(self, digest: str) -> int:
        """The blob's size in bytes. Raises :class:`~regalia.errors.NotFound`."""
        return int(self._head(digest)["ContentLength"])

    def local_path(self, digest: str) -> Path | None:
        """``None``: the blobs are not on this machine."""
        validate_digest(digest)
        return None

    def open(self, digest: str) -> BinaryIO:
        """A buffered, seekable stream over the blob (ranged GETs as it is read).

        Raises :class:`~regalia.errors.NotFound`.
        """
        size = self.size(digest)
        return io.BufferedReader(_ObjectReader(self, digest, size), READ_BUFFER)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every object under ``<prefix>/blobs/`` named by its digest, with its
        size and last-modified time (completed uploads only: S3 lists nothing else)."""
        with self._errors("list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._blobs_prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    name = item["Key"].rsplit("/", 1)[-1]
                    if _DIGEST_NAME.fullmatch(name) and item["Key"] == self.key(name):
                        yield BlobInfo(name, int(item["Size"]), item["LastModified"].timestamp())

    def presigned_get(self, digest: str, expires_s: int, filename: str | None = None) -> str:
        """A URL that downloads the blob without credentials for ``expires_s`` seconds;
        with ``filename``, browsers save it under that name."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(digest)}
        if filename:
            safe = filename.replace("\\", "_").replace('"', "_")
            params["ResponseContentDisposition"] = (
                f'attachment; filename="{safe.encode("ascii", "replace").decode()}"; '
                f"filename*=UTF-8''{quote(filename, safe='')}"
            )
        with self._errors("presign"):
            url: str = self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=int(expires_s)
            )
        return url

    def check_bucket(self) -> None:
        """Fail early and clearly if the bucket is missing or unreachable (server start).

        Raises:
            StorageUnavailable: the bucket does not exist, access is denied, or
                the endpoint does not answer.
        """
        import botocore.exceptions

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if code in _MISSING or code == "NoSuchBucket":
                raise StorageUnavailable(
                    f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}; "
                    "create it first (Regalia does not create buckets)",
                    bucket=self.bucket,
                    endpoint=self.endpoint,
                ) from None
            raise self._unavailable("check the bucket", exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._unavailable("check the bucket", exc) from None

    # -- writes ----------------------------------------------------------------------
    def put_file(self, src: Path, *, progress: ProgressSink | None = None) -> StoredBlob:
        """Upload ``src``; return its ``StoredBlob(sha256, size, check)``.

        One read pass computes the SHA-256, the BLAKE3 check and the SHA-256 of
        each part; the upload then sends each part with its SHA-256, so bytes
        that changed since are refused. Content stored already is not sent again.

        Raises:
            FileMissing: ``src`` does not exist.
            FileChanged: ``src`` was modified, replaced or removed meanwhile.
            InvalidRequest: ``src`` is not a readable regular file.
            StorageUnavailable: the bucket could not be reached or written.
        """
        src = Path(src)
        fd, before = _open_source(src)
        try:
            blob, parts = self._hash(fd, before.st_size)
            _check_unchanged(src, fd, before, before.st_size, blob.size)
            if not self.has(blob.digest):
                self._upload(fd, blob, parts, progress, src=src, before=before)
            elif progress is not None and blob.size:
                progress.advance(blob.size)
        finally:
            os.close(fd)
        return blob

    def put_stream(self, digest_expected: str | None, stream: BinaryIO) -> StoredBlob:
        """Store everything ``stream`` yields; return its ``StoredBlob(sha256, size, check)``.

        The stream is spooled to a temporary local file while hashed (removed
        afterwards), then uploaded like :meth:`put_file`.

        Raises:
            IntegrityError: the content does not hash to ``digest_expected``
                (nothing is sent).
            StorageUnavailable: the bucket could not be reached or written.
        """
        if digest_expected is not None:
            validate_digest(digest_expected)
        try:
            if self.tmp_dir is not None:
                self.tmp_dir.mkdir(parents=True, exist_ok=True)
            spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below
                prefix="regalia-s3-", suffix=".part", dir=self.tmp_dir
            )
        except OSError as exc:
            raise StorageUnavailable(f"cannot spool an upload: {exc.strerror or exc}") from exc
        with spool:
            fd = spool.fileno()
            parts: list[_Part] = []
            with StreamHasher() as hasher:
                part = hashlib.sha256()
                in_part = 0
                while chunk := stream.read(STREAM_CHUNK):
                    hasher.update(chunk)
                    try:
                        write_all(fd, chunk)
                    except OSError as exc:
                        raise StorageUnavailable(
                            f"cannot spool an upload: {exc.strerror or exc}"
                        ) from exc
                    view = memoryview(chunk)
                    while view:  # chunks may straddle part boundaries
                        take = min(len(view), self._part_size(None) - in_part)
                        part.update(view[:take])
                        in_part += take
                        view = view[take:]
                        if in_part == self._part_size(None):
                            parts.append(_Part(len(parts) + 1, 0, in_part, part.digest()))
                            part, in_part = hashlib.sha256(), 0
                if in_part or not parts:
                    parts.append(_Part(len(parts) + 1, 0, in_part, part.digest()))
                digest, check = hasher.digests()
            assert check is not None
            blob = StoredBlob(digest, hasher.size, check)
            if digest_expected is not None and digest != digest_expected:
                raise IntegrityError(
                    f"uploaded content hashes to {digest}, expected {digest_expected}",
                    expected=digest_expected,
                    actual=digest,
                )
            parts = _with_offsets(parts)
            if not self.has(digest):
                self._upload(fd, blob, parts, None)
        return blob

    def adopt(self, path: Path, blob: StoredBlob) -> StoredBlob:
        """Upload a file whose digests the caller verified (a server's received
        upload); ``path`` is removed either way."""
        path = Path(path)
        try:
            if self.has(blob.digest):
                return blob
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size
                if size != blob.size:
                    raise IntegrityError(
                        f"{path} is {size} bytes, expected {blob.size}", digest=blob.digest
                    )
                self._upload(fd, blob, self._part_hashes(fd, size, blob.digest), None)
            finally:
                os.close(fd)
        finally:
            path.unlink(missing_ok=True)
        return blob

    def delete(self, digest: str) -> None:
        """Remove a blob; removing a missing blob is not an error."""
        key = self.key(digest)
        with self._errors("delete", digest):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    # -- the plumbing ------------------------------------------------------------------
    def _part_size(self, size: int | None) -> int:
        """The part size for a file of ``size`` bytes (``None``: a stream of unknown size)."""
        if size is None or size <= self.part_size * MAX_PARTS:
            return self.part_size
        return -(-size // MAX_PARTS)

    def _hash(self, fd: int, size: int) -> tuple[StoredBlob, list[_Part]]:
        """One read pass: the blob's digests and the SHA-256 of each of its parts.

        SHA-256 runs in this thread, BLAKE3 in one helper thread and, for a
        file of several parts, the parts' SHA-256 in another (a single part's
        SHA-256 is the blob's digest).
        """
        step = self._part_size(size)
        parts: list[_Part] = []
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, size, os.POSIX_FADV_SEQUENTIAL)
        relay = _HashRelay(hashlib.sha256()) if size > step else None  # type: ignore[arg-type]

        def part_done(offset: int, length: int) -> None:  # runs in the relay's thread
            assert relay is not None
            parts.append(_Part(len(parts) + 1, offset, length, relay.hasher.digest()))
            relay.hasher = hashlib.sha256()  # type: ignore[assignment]

        with StreamHasher() as hasher:
            if relay is not None:
                relay.start()
            try:
                offset = pos = 0
                while offset < size:
                    end = min(offset + step, size)
                    while pos < end:
                        chunk = os.pread(fd, min(HASH_CHUNK, end - pos), pos)
                        if not chunk:
                            break
                        hasher.update(chunk)
                        if relay is not None:
                            relay.feed(chunk)
                        pos += len(chunk)
                    if relay is not None:
                        relay.then(functools.partial(part_done, offset, pos - offset))
                    if pos < end:
                        break  # shorter than it was: _check_unchanged reports it
                    offset = end
            finally:
                if relay is not None:
                    relay.finish()
            digest, check = hasher.digests()
        if relay is not None and relay.error is not None:
            raise relay.error
        assert check is not None
        if relay is None:
            parts = [_Part(1, 0, hasher.size, bytes.fromhex(digest))]
        return StoredBlob(digest, hasher.size, check), parts

    def _part_hashes(self, fd: int, size: int, digest: str) -> list[_Part]:
        """The parts of a file whose digest is known already (one part: the digest)."""
        step = self._part_size(size)
        if size <= step:
            return [_Part(1, 0, size, bytes.fromhex(digest))]
        parts = []
        for number, offset in enumerate(range(0, size, step), start=1):
            length = min(step, size - offset)
            h = hashlib.sha256()
            pos = offset
            while pos < offset + length:
                chunk = os.pread(fd, min(HASH_CHUNK, offset + length - pos), pos)
                if not chunk:
                    break
                h.update(chunk)
                pos += len(chunk)
            parts.append(_Part(number, offset, length, h.digest()))
        return parts

    def _upload(
        self,
        fd: int,
        blob: StoredBlob,
        parts: list[_Part],
        progress: ProgressSink | None,
        *,
        src: Path | None = None,
        before: os.stat_result | None = None,
    ) -> None:
        """Send ``parts`` of ``fd`` as the blob's object: one PUT, or a multipart upload."""
        key = self.key(blob.digest)
        sink = _LockedSink(progress)
        if len(parts) == 1:
            (part,) = parts
            with self._errors("upload", blob.digest, changed=src):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=_FileSlice(fd, 0, part.size),
                    ContentLength=part.size,
                    ContentType="application/octet-stream",
                    ChecksumSHA256=_b64(part.sha256),
                )
            sink.advance(part.size)
            return
        with self._errors("start an upload", blob.digest):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                ContentType="application/octet-stream",
                ChecksumAlgorithm="SHA256",
            )["UploadId"]
        try:
            done = self._send_parts(fd, key, upload_id, parts, sink, src)
            if src is not None and before is not None:
                _check_unchanged(src, fd, before, before.st_size, before.st_size)
            with self._errors("complete an upload", blob.digest, changed=src):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                )
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _send_parts(
        self,
        fd: int,
        key: str,
        upload_id: str,
        parts: list[_Part],
        sink: _LockedSink,
        src: Path | None,
    ) -> list[dict[str, Any]]:
        """Send every part in parallel threads; the first failure stops the rest."""
        failed = threading.Event()

        def send(part: _Part) -> dict[str, Any]:
            if failed.is_set():
                raise _Cancelled()
            checksum = _b64(part.sha256)
            try:
                with self._errors("upload a part", key.rsplit("/", 1)[-1], changed=src):
                    answer = self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=part.number,
                        Body=_FileSlice(fd, part.offset, part.size),
                        ContentLength=part.size,
                        ChecksumSHA256=checksum,
                    )
            except BaseException:
                failed.set()
                raise
            sink.advance(part.size)
            return {"PartNumber": part.number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

        with ThreadPoolExecutor(min(self.workers, len(parts)), "regalia-s3") as pool:
            futures = [pool.submit(send, part) for part in parts]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed.set()  # parts not started yet are not sent (all may be done already)
        for future in futures:
            error = future.exception()
            if error is not None and not isinstance(error, _Cancelled):
                raise error
        return [f.result() for f in futures]

    def _abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload, ignoring errors (the failure is reported already)."""
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _head(self, digest: str) -> dict[str, Any]:
        key = self.key(digest)
        with self._errors("look up", digest):
            answer: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        return answer

    def _get_range(self, digest: str, start: int, end: int | None) -> Any:
        """The body of a GET of bytes ``start..end`` (inclusive; ``None``: to the end)."""
        span = f"bytes={start}-" if end is None else f"bytes={start}-{end}"
        with self._errors("read", digest):
            return self.client.get_object(Bucket=self.bucket, Key=self.key(digest), Range=span)[
                "Body"
            ]

    def _unavailable(self, what: str, exc: BaseException) -> StorageUnavailable:
        return StorageUnavailable(
            f"S3 bucket {self.bucket!r} at {self.endpoint or 'the default AWS endpoint'}: "
            f"cannot {what}: {_reason(exc)}",
            bucket=self.bucket,
            endpoint=self.endpoint,
        )

    @contextlib.contextmanager
    def _errors(
        self, what: str, digest: str | None = None, *, changed: Path | None = None
    ) -> Iterator[None]:
        """Turn botocore errors into Regalia's: NotFound, FileChanged, StorageUnavailable."""
        import botocore.exceptions

        try:
            yield
        except RegaliaError:
            raise
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if code in _MISSING and digest is not None:
                raise NotFound(f"blob {digest} is not in the store", digest=digest) from None
            if code in _CHANGED and changed is not None:
                raise FileChanged(
                    f"{changed} changed while being stored; nothing was kept, try again",
                    path=str(changed),
                ) from None
            raise self._unavailable(what, exc) from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise self._unavailable(what, exc) from None


class _Cancelled(Exception):
    """A part not sent because another one failed first."""


class _LockedSink:
    """A progress sink told from several threads, one at a time."""

    def __init__(self, sink: ProgressSink | None) -> None:
        self.sink = sink
        self.lock = threading.Lock()

    def advance(self, n: int) -> None:
        if self.sink is not None and n:
            with self.lock:
                self.sink.advance(n)


class _FileSlice(io.RawIOBase):
    """``size`` bytes of ``fd`` from ``offset`` as a seekable stream (a request body;
    botocore rewinds it to retry). Reads use ``pread``, so slices of one fd can be
    read by several threads at once."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self.fd, self.offset, self.length = fd, offset, size
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        self.pos = max(0, min(self.length, base + pos))
        return self.pos

    def __len__(self) -> int:
        return self.length - self.pos

    def read(self, size: int | None = -1) -> bytes:
        left = self.length - self.pos
        count = left if size is None or size < 0 else min(size, left)
        if count <= 0:
            return b""
        data = os.pread(self.fd, count, self.offset + self.pos)
        self.pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ObjectReader(io.RawIOBase):
    """A blob's object as a raw seekable stream: one ranged GET read sequentially,
    a new one after a seek elsewhere."""

    def __init__(self, store: S3BlobStore, digest: str, size: int) -> None:
        super().__init__()
        self.store, self.digest, self.size = store, digest, size
        self.pos = 0
        self._body: Any = None
        self._body_pos = -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        if base + pos < 0:
            raise ValueError("negative seek position")
        self.pos = base + pos
        return self.pos

    def readinto(self, buffer: Any) -> int:
        if self.pos >= self.size or not len(buffer):
            return 0
        if self._body is None or self._body_pos != self.pos:
            self._drop()
            self._body = self.store._get_range(self.digest, self.pos, None)
            self._body_pos = self.pos
        want = min(len(buffer), self.size - self.pos)
        with self.store._errors("read", self.digest):
            data = self._body.read(want)
        if not data:
            raise StorageUnavailable(
                f"blob {self.digest} ended at byte {self.pos} of {self.size} in S3 bucket "
                f"{self.store.bucket!r}",
                digest=self.digest,
            )
        n = len(data)
        buffer[:n] = data
        self.pos += n
        self._body_pos = self.pos
        return n

    def _drop(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
        self._body = None

    def close(self) -> None:
        self._drop()
        super().close()


def s3_endpoint_url() -> str | None:
    """The S3 endpoint from the environment: ``REGALIA_S3_ENDPOINT_URL``, else
    ``AWS_ENDPOINT_URL``, else ``None`` (AWS's own)."""
    return os.environ.get("REGALIA_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or None


def make_s3_client(endpoint_url: str | None = None, *, max_pool: int = 32) -> Any:
    """A boto3 S3 client for Regalia's stores, talking to ``endpoint_url`` (by
    default the one :func:`s3_endpoint_url` finds).

    Credentials and region come from the standard AWS chain (environment,
    profiles, instance roles), the region defaulting to ``us-east-1``. With an
    ``endpoint_url`` (an S3-compatible service) the client uses path-style
    addressing. Request checksums are Regalia's own (``x-amz-checksum-sha256``),
    so botocore adds none and does not hash bodies again for signing.
    """
    import boto3
    from botocore.config import Config

    endpoint_url = endpoint_url or s3_endpoint_url()
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    s3: dict[str, Any] = {"payload_signing_enabled": False}
    if endpoint_url:
        s3["addressing_style"] = "path"
    config = Config(
        region_name=region,
        s3=s3,
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        max_pool_connections=max_pool,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        signature_version="s3v4",
    )
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)


def _with_offsets(parts: list[_Part]) -> list[_Part]:
    out, offset = [], 0
    for part in parts:
        out.append(part._replace(offset=offset))
        offset += part.size
    return out


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _code(exc: Any) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    code = str(error.get("Code") or "")
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or str(status or "")


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return f"{error.get('Code', '?')}: {error.get('Message') or 'no message'}"
    return str(exc) or type(exc).__name__
