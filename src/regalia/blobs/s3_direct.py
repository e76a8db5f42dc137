"""Transfers that go straight between a client and the bucket (issue 15).

With an S3 store the server hands out presigned URLs after its role checks
and never carries the client's bytes:

* An upload is an S3 multipart upload to a *staging key* of its own,
  ``<prefix>/uploads/<upload id>``, never to the content's key: until it is
  verified nothing can replace or shadow stored content. Each part's URL is
  signed with the part's SHA-256 (``x-amz-checksum-sha256`` is a signed
  header), so the bucket itself refuses a part whose bytes differ from what
  the client declared (``BadDigest``), and a request without the header does
  not match the signature.
* On completion the parts are joined with their declared checksums, and a
  ``HEAD`` of the staging object must give the composite checksum those parts
  make (the SHA-256 of their SHA-256s, ``-<count>``): the bucket holds exactly
  the declared parts, checked, not trusted. Then :meth:`DirectUploads.verify`
  reads the staging object once, in parallel ranges, to establish the whole
  content's SHA-256 (its identity) and BLAKE3 check; only content that hashes
  to the announced digest is copied (inside the bucket) to its content key.
* A content up to :data:`WHOLE_PUT_MAX` bytes may instead be sent in one
  presigned ``PUT`` straight to its *content key*, signed with the content's
  own SHA-256 and the upload's id as metadata (both signed headers). The
  bucket refuses any other bytes, so overwriting the key is harmless (only
  those very bytes are accepted) and nothing is written twice or read back
  to establish identity. Completion checks with ``HEAD`` that the key holds
  this upload's object with the digest's checksum (:meth:`DirectUploads.put_received`),
  then reads it once for its BLAKE3 check unless that is known. This is used
  only with a bucket that proves it verifies checksums
  (:meth:`DirectUploads.verifies_checksums`).
* A download is a presigned ``GET`` of the content key.

Every bucket error comes out as a Regalia error (:mod:`regalia.errors`).

Example::

    direct = DirectUploads(store)
    store_id = direct.begin(upload_id)
    url, headers = direct.part_url(upload_id, store_id, 1, part_sha256, expires_s=900)
    ...  # the client PUTs the part to url with headers
    direct.finish(upload_id, store_id, {1: part_sha256})
    digest, check = direct.verify(upload_id, size)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote

from regalia.blobs.base import StreamHasher, validate_digest
from regalia.errors import (
    ContentMismatch,
    IntegrityError,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
)

MiB = 1 << 20
MIN_PART = 5 * MiB
"""S3's smallest part (all but the last)."""
MAX_PARTS = 10_000
"""S3's most parts in one upload."""
VERIFY_RANGE = 16 * MiB
"""Bytes per ranged GET while verifying a completed upload."""
VERIFY_PARALLEL = 4
"""Ranged GETs in flight while verifying (bounds memory to about 5 ranges)."""
MEASURE_RANGE = 2 * MiB
"""Bytes per ranged GET while measuring a whole-PUT content's check: small,
so the server's RSS stays flat (measured: +6 MiB over a 1 GiB content, where
4 MiB ranges cost +32 MiB), large enough that requests cost little."""
WHOLE_PUT_MAX = 5 * 1024 * MiB
"""S3's largest single ``PUT``."""
UPLOAD_META = "regalia-upload"
"""The metadata key a whole ``PUT`` carries its upload's id in."""


class BucketStore(Protocol):
    """What direct transfers need of an S3 blob store."""

    client: Any
    bucket: str
    prefix: str

    def key(self, digest: str) -> str: ...


class StagedPart(NamedTuple):
    """A part the bucket holds for an upload: its 1-based ``number``, ``size``, ``etag``."""

    number: int
    size: int
    etag: str


def part_size_for(size: int, preferred: int) -> int:
    """The part size of an upload of ``size`` bytes: ``preferred``, raised to
    S3's minimum and so that the parts fit S3's limit of 10,000."""
    least = -(-size // MAX_PARTS)
    return max(preferred, MIN_PART, least)


def b64_sha256(hex_digest: str) -> str:
    """A SHA-256 in hex as S3 writes it (base64 of the 32 bytes)."""
    return base64.b64encode(bytes.fromhex(validate_digest(hex_digest))).decode()


def composite_sha256(part_digests: list[str]) -> str:
    """The checksum S3 gives a multipart object: base64 SHA-256 of the parts'
    SHA-256s, then ``-<part count>``."""
    joined = b"".join(bytes.fromhex(d) for d in part_digests)
    return f"{base64.b64encode(hashlib.sha256(joined).digest()).decode()}-{len(part_digests)}"


@contextlib.contextmanager
def bucket_errors(bucket: str, what: str) -> Iterator[None]:
    """Turn boto3/botocore errors into Regalia's (none escapes this layer)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"NoSuchKey", "NoSuchUpload", "404", "NotFound"}:
            raise NotFound(f"{what}: not in bucket {bucket!r} ({code})") from None
        if code in {"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"}:
            raise ContentMismatch(f"{what}: the bytes do not match their checksum") from None
        if code in {"InvalidPart", "InvalidPartOrder", "EntityTooSmall"}:
            raise InvalidRequest(f"{what}: the bucket refused the parts ({code})") from None
        raise StorageUnavailable(f"{what}: bucket {bucket!r} answered {code or exc}") from None
    except BotoCoreError as exc:
        raise StorageUnavailable(f"{what}: bucket {bucket!r} unreachable ({exc})") from None


class DirectUploads:
    """Presigned multipart uploads into staging keys, and presigned downloads."""

    def __init__(self, store: BucketStore) -> None:
        self.store = store
        self.client = store.client
        self.bucket = store.bucket
        base = store.prefix.strip("/")
        self._staging = f"{base}/uploads/" if base else "uploads/"
        self._verifies: bool | None = None

    def staging_key(self, upload_id: str) -> str:
        """Where upload ``upload_id`` is assembled."""
        if not upload_id or "/" in upload_id:
            raise InvalidRequest(f"not an upload id: {upload_id!r}")
        return self._staging + upload_id

    def begin(self, upload_id: str) -> str:
        """Start the multipart upload; return the bucket's id for it."""
        with bucket_errors(self.bucket, "starting an upload"):
            made = self.client.create_multipart_upload(
                Bucket=self.bucket,
                Key=self.staging_key(upload_id),
                ChecksumAlgorithm="SHA256",
                ContentType="application/octet-stream",
            )
        return str(made["UploadId"])

    def part_url(
        self, upload_id: str, store_upload_id: str, number: int, sha256: str, *, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        """A URL that accepts exactly the part whose SHA-256 is ``sha256``, and
        the headers the client must send with it."""
        checksum = b64_sha256(sha256)
        with bucket_errors(self.bucket, "signing a part URL"):
            url = self.client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.staging_key(upload_id),
                    "UploadId": store_upload_id,
                    "PartNumber": number,
                    "ChecksumSHA256": checksum,
                },
                ExpiresIn=expires_s,
            )
        return str(url), {"x-amz-checksum-sha256": checksum}

    def received(self, upload_id: str, store_upload_id: str) -> dict[int, StagedPart]:
        """The parts the bucket holds for this upload, by number."""
        parts: dict[int, StagedPart] = {}
        with bucket_errors(self.bucket, "listing an upload's parts"):
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=self.staging_key(upload_id), UploadId=store_upload_id
            )
            for page in pages:
                for p in page.get("Parts", []):
                    number = int(p["PartNumber"])
                    parts[number] = StagedPart(number, int(p["Size"]), str(p["ETag"]))
        return parts

    def finish(
        self,
        upload_id: str,
        store_upload_id: str,
        declared: Mapping[int, str],
        sizes: Mapping[int, int],
    ) -> None:
        """Join the parts, then check with ``HEAD`` that the object is exactly
        the declared parts (numbers ``1..n``, each its declared size and SHA-256).

        Raises:
            InvalidRequest: a part is missing or has another size than declared.
            IntegrityError: the bucket's object is not the declared parts.
        """
        held = self.received(upload_id, store_upload_id)
        numbers = sorted(declared)
        if numbers != list(range(1, len(numbers) + 1)) or sorted(held) != numbers:
            missing = [n - 1 for n in numbers if n not in held]
            raise InvalidRequest(
                f"the upload lacks parts {missing[:20]}; send them, then complete",
                missing_parts=missing,
            )
        for n in numbers:
            if held[n].size != sizes[n]:
                raise InvalidRequest(
                    f"part {n - 1} holds {held[n].size} bytes, expected {sizes[n]}; send it again"
                )
        key = self.staging_key(upload_id)
        with bucket_errors(self.bucket, "completing an upload"):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=store_upload_id,
                MultipartUpload={
                    "Parts": [
                        {
                            "PartNumber": n,
                            "ETag": held[n].etag,
                            "ChecksumSHA256": b64_sha256(declared[n]),
                        }
                        for n in numbers
                    ]
                },
            )
        self.check_assembled(upload_id, [declared[n] for n in numbers], sum(sizes.values()))

    def check_assembled(self, upload_id: str, part_digests: list[str], size: int) -> None:
        """``HEAD`` the staging object: its size and composite checksum must be
        those of the declared parts."""
        with bucket_errors(self.bucket, "checking an upload"):
            head = self.client.head_object(
                Bucket=self.bucket, Key=self.staging_key(upload_id), ChecksumMode="ENABLED"
            )
        got = head.get("ChecksumSHA256")
        want = composite_sha256(part_digests)
        if int(head["ContentLength"]) != size or (got is not None and got != want):
            raise IntegrityError(
                f"the bucket's object for upload {upload_id} is not the declared parts "
                f"({head['ContentLength']} bytes, checksum {got}; expected {size}, {want})"
            )

    def verify(self, upload_id: str, size: int) -> tuple[str, str]:
        """Read the staging object once (ranged GETs in parallel, bounded
        memory); return its SHA-256 and BLAKE3 check."""
        with StreamHasher() as hasher:
            self._read_ranges(self.staging_key(upload_id), size, VERIFY_RANGE, hasher.update)
            digest, check = hasher.digests()
        assert check is not None
        if hasher.size != size:
            raise IntegrityError(f"upload {upload_id} holds {hasher.size} bytes, expected {size}")
        return digest, check

    def _read_ranges(
        self, key: str, size: int, span: int, consume: Callable[[bytes], object]
    ) -> None:
        """Feed object ``key`` (``size`` bytes) to ``consume`` in order, read in
        ranges of ``span`` bytes, :data:`VERIFY_PARALLEL` in flight."""

        def fetch(start: int) -> bytes:
            end = min(start + span, size) - 1
            with bucket_errors(self.bucket, "reading an object to verify it"):
                body = self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
                )["Body"]
                data: bytes = body.read()
            if len(data) != end - start + 1:
                raise IntegrityError(f"object {key}: short read at byte {start}")
            return data

        with ThreadPoolExecutor(VERIFY_PARALLEL) as pool:
            starts = iter(range(0, size, span))
            window: deque[Future[bytes]] = deque()
            for start in starts:
                window.append(pool.submit(fetch, start))
                if len(window) >= VERIFY_PARALLEL:
                    break
            while window:
                chunk = window.popleft().result()
                nxt = next(starts, None)
                if nxt is not None:
                    window.append(pool.submit(fetch, nxt))
                consume(chunk)

    # -- whole PUTs to the content key ---------------------------------------------------
    def verifies_checksums(self) -> bool:
        """Whether whole PUTs can be trusted to this bucket: it refuses a ``PUT``
        whose bytes differ from its ``x-amz-checksum-sha256``, and its ``HEAD``
        gives back the checksum and metadata of one it took (asked once, with
        a tiny probe object).

        Raises:
            StorageUnavailable: the bucket answered neither way.
        """
        if self._verifies is None:
            probe = self._staging + ".checksum-probe"
            body = b"regalia"
            try:
                with bucket_errors(self.bucket, "probing checksum support"):
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=probe,
                        Body=body,
                        ChecksumSHA256=b64_sha256(hashlib.sha256(b"other").hexdigest()),
                    )
            except ContentMismatch:
                self._verifies = self._returns_checksums(probe, body)
            else:
                self._verifies = False
            self.drop_key(probe)
        return self._verifies

    def _returns_checksums(self, key: str, body: bytes) -> bool:
        checksum = b64_sha256(hashlib.sha256(body).hexdigest())
        with bucket_errors(self.bucket, "probing checksum support"):
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ChecksumSHA256=checksum,
                Metadata={UPLOAD_META: "probe"},
            )
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        meta = {str(k).lower(): v for k, v in (head.get("Metadata") or {}).items()}
        return head.get("ChecksumSHA256") == checksum and meta.get(UPLOAD_META) == "probe"

    def put_url(self, upload_id: str, digest: str, *, expires_s: int) -> tuple[str, dict[str, str]]:
        """A URL that stores exactly the content ``digest`` under its content
        key, marked as upload ``upload_id``; and the headers to send with it."""
        checksum = b64_sha256(digest)
        self.staging_key(upload_id)  # validates the id
        with bucket_errors(self.bucket, "signing an upload URL"):
            url = self.client.generate_presigned_url(
                "put_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.store.key(digest),
                    "ChecksumSHA256": checksum,
                    "Metadata": {UPLOAD_META: upload_id},
                },
                ExpiresIn=expires_s,
            )
        return str(url), {"x-amz-checksum-sha256": checksum, f"x-amz-meta-{UPLOAD_META}": upload_id}

    def put_received(self, upload_id: str, digest: str, size: int) -> bool:
        """Whether the content key holds this upload's ``PUT`` (its metadata),
        ``size`` bytes whose SHA-256 the bucket verified to be ``digest``."""
        try:
            with bucket_errors(self.bucket, "checking an upload"):
                head = self.client.head_object(
                    Bucket=self.bucket, Key=self.store.key(digest), ChecksumMode="ENABLED"
                )
        except NotFound:
            return False
        meta = {str(k).lower(): v for k, v in (head.get("Metadata") or {}).items()}
        return (
            meta.get(UPLOAD_META) == upload_id
            and head.get("ChecksumSHA256") == b64_sha256(digest)
            and int(head["ContentLength"]) == size
        )

    def measure(self, digest: str, size: int) -> str:
        """The BLAKE3 check of stored content ``digest``, read once in small
        parallel ranges (bounded memory)."""
        with StreamHasher(sha256=False) as hasher:
            self._read_ranges(self.store.key(digest), size, MEASURE_RANGE, hasher.update)
            check = hasher.check_digest()
        if hasher.size != size:
            raise IntegrityError(f"content {digest} holds {hasher.size} bytes, expected {size}")
        return check

    def promote(self, upload_id: str, digest: str) -> None:
        """Copy the verified staging object to its content key (unless the
        content is stored already), then drop the staging object."""
        target = self.store.key(digest)
        with bucket_errors(self.bucket, "storing a verified upload"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=target)
                present = True
            except Exception as exc:  # a 404 means "copy it"; anything else is raised
                if _status(exc) != 404:
                    raise
                present = False
            if not present:
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": self.staging_key(upload_id)},
                )
        self.drop(upload_id)

    def drop(self, upload_id: str) -> None:
        """Delete the staging object (a missing one is not an error)."""
        self.drop_key(self.staging_key(upload_id))

    def drop_key(self, key: str) -> None:
        with bucket_errors(self.bucket, "deleting an upload"):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def abort(self, upload_id: str, store_upload_id: str) -> None:
        """Give the upload up: the bucket frees its parts."""
        with contextlib.suppress(NotFound), bucket_errors(self.bucket, "abandoning an upload"):
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self.staging_key(upload_id), UploadId=store_upload_id
            )
        self.drop(upload_id)

    def unfinished(self) -> Iterator[tuple[str, str, datetime]]:
        """Every multipart upload under the staging prefix: (upload id, bucket's id, begun)."""
        with bucket_errors(self.bucket, "listing unfinished uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._staging
            )
            for page in pages:
                for u in page.get("Uploads", []):
                    yield str(u["Key"])[len(self._staging) :], str(u["UploadId"]), u["Initiated"]

    def download_url(self, digest: str, *, expires_s: int, filename: str | None = None) -> str:
        """A presigned GET of a stored content (HTTP Range works on it); with
        ``filename``, the bucket answers it as an attachment of that name."""
        params = {"Bucket": self.bucket, "Key": self.store.key(digest)}
        if filename is not None:
            params["ResponseContentDisposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
        with bucket_errors(self.bucket, "signing a download URL"):
            return str(
                self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
            )


def direct_uploads_for(store: object) -> DirectUploads | None:
    """Direct transfers for a store that is a bucket, else ``None`` (a folder
    store's clients go through the server's own blob routes)."""
    if all(hasattr(store, name) for name in ("client", "bucket", "prefix", "key")):
        return DirectUploads(store)  # type: ignore[arg-type]
    return None


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None
