"""Uploads that clients send straight to the bucket, resumable from any node.

With an S3 store (:mod:`regalia.blobs.s3_direct`), ``POST /uploads`` begins
(or resumes) the caller's upload of a content as a multipart upload in the
bucket and answers ``direct: true``; the client asks for the URLs of the
parts it still has to send, declaring each part's SHA-256 (the bucket accepts
no other bytes at that URL), PUTs them there in parallel, then completes. The
upload's record is a row in the database (:class:`DirectUpload`) and its
parts are in the bucket, so a client whose node died resumes through any
other node and sends only the parts the bucket lacks.

Completion joins the parts, checks with ``HEAD`` that the bucket holds
exactly the declared parts, reads the object once to establish the whole
content's SHA-256 and BLAKE3 check, and only then stores it under its content
key and grants the caller the right to reference it, as a received upload
does (:meth:`record_received`).

A content of at most ``REGALIA_DIRECT_PUT_MAX_BYTES`` is a *whole PUT*
instead, when the bucket verifies checksums: one "part", the content itself,
whose URL stores it under its content key signed with its SHA-256 (the
bucket refuses other bytes). Completion checks with ``HEAD`` that the key
holds this upload's object with that checksum, and reads it once for its
BLAKE3 check only if none is known: nothing is written twice, nothing
through the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from regalia.blobs.base import StoredBlob, validate_digest
from regalia.blobs.s3_direct import WHOLE_PUT_MAX, DirectUploads, part_size_for
from regalia.errors import ContentMismatch, InvalidRequest, NotFound
from regalia.service.transfer import TransferMixin
from regalia.service.views import Actor
from regalia.store.models import DirectUpload, DirectUploadPart
from regalia.store.repo import Repo

PART_URL_LIFETIME_S = 3600
"""How long a part's URL accepts its bytes (a part of 64 MiB at 1 MB/s fits)."""
DOWNLOAD_URL_LIFETIME_S = 900
"""How long a download URL works (a download resumes with a new one)."""
MAX_URLS_PER_REQUEST = 1000
DIRECT_PART_BYTES = 16 * 1024 * 1024
"""The part size of a direct upload (smaller parts keep more in flight; each
costs one URL request): REGALIA_UPLOAD_PART_BYTES if smaller."""
WHOLE_PUT = "whole-put"
"""``DirectUpload.store_upload_id`` of a whole PUT (no multipart upload in the bucket)."""
DIRECT_UPLOAD_MAX_AGE = timedelta(days=7)
"""An upload untouched this long is abandoned by the sweep (as on a server's disk)."""


@dataclass(frozen=True)
class DirectState:
    """A direct upload: its content, part layout, and the parts the bucket holds."""

    digest: str
    size: int
    part_size: int
    part_count: int
    parts_received: list[int]


@dataclass(frozen=True)
class PartUrl:
    """Where to PUT part ``part`` (0-based), with the ``headers`` to send."""

    part: int
    url: str
    headers: dict[str, str]


class DirectTransferMixin(TransferMixin):
    direct: DirectUploads | None

    def _direct(self) -> DirectUploads:
        if self.direct is None:
            raise InvalidRequest("this server's blob store takes no direct uploads")
        return self.direct

    def begin_direct_upload(self, actor: Actor, digest: str, size: int) -> DirectState:
        """Begin or resume the caller's direct upload of ``digest`` (``size`` bytes)."""
        direct = self._direct()
        validate_digest(digest)
        if size < 0:
            raise InvalidRequest("an upload's size cannot be negative")
        found = self.db.read(lambda repo: _upload(repo, actor.user_id, digest))
        if found is not None and found.size != size:
            raise InvalidRequest(
                f"your upload of {digest} is for {found.size} bytes, not {size}; "
                "abandon it (DELETE /uploads/{digest}) to start over"
            )
        if found is None:
            upload_id = uuid.uuid4().hex
            whole = 0 < size <= min(self.settings.direct_put_max_bytes, WHOLE_PUT_MAX) and (
                direct.verifies_checksums()
            )
            if whole:
                store_id, part_size = WHOLE_PUT, size
            else:
                store_id = direct.begin(upload_id)
                part_size = part_size_for(
                    size, min(self.settings.upload_part_bytes, DIRECT_PART_BYTES)
                )
            now = self.now()

            def create(repo: Repo) -> DirectUpload:
                existing = _upload(repo, actor.user_id, digest)
                if existing is not None:  # another node began it meanwhile
                    return existing
                row = DirectUpload(
                    id=upload_id,
                    org_id=actor.org_id,
                    user_id=actor.user_id,
                    digest=digest,
                    size=size,
                    part_size=part_size,
                    store_upload_id=store_id,
                    created_at=now,
                    touched_at=now,
                )
                repo.s.add(row)
                repo.s.flush()
                return row

            found = self.db.write(create)
            if found.id != upload_id and store_id != WHOLE_PUT:
                direct.abort(upload_id, store_id)
        return self._direct_state(found)

    def direct_upload_state(self, actor: Actor, digest: str) -> DirectState:
        """Which parts of the caller's direct upload the bucket holds."""
        return self._direct_state(self._own_upload(actor, digest))

    def direct_part_urls(
        self, actor: Actor, digest: str, parts: Sequence[tuple[int, str]]
    ) -> list[PartUrl]:
        """URLs for parts ``(number, sha256)`` of the caller's upload; each URL
        accepts only bytes with that SHA-256. Asking again for a part replaces
        its declared SHA-256 (the client may have resent changed bytes)."""
        direct = self._direct()
        if len(parts) > MAX_URLS_PER_REQUEST:
            raise InvalidRequest(f"ask for at most {MAX_URLS_PER_REQUEST} part URLs at once")
        row = self._own_upload(actor, digest)
        count = _part_count(row.size, row.part_size)
        declared: dict[int, str] = {}
        for number, sha256 in parts:
            if not 0 <= number < count:
                raise InvalidRequest(
                    f"part {number} is out of range: the upload has {count} parts", part=number
                )
            declared[number] = validate_digest(sha256.lower())
        whole = row.store_upload_id == WHOLE_PUT
        if whole and any(d != row.digest for d in declared.values()):
            raise InvalidRequest(
                "this upload is one PUT of the whole content: its part 0 is declared "
                f"with the content's own digest {row.digest}"
            )
        now = self.now()

        def record(repo: Repo) -> None:
            s = repo.s
            s.execute(
                delete(DirectUploadPart).where(
                    DirectUploadPart.upload_id == row.id,
                    DirectUploadPart.number.in_(list(declared)),
                )
            )
            s.add_all(
                DirectUploadPart(upload_id=row.id, number=n, sha256=d) for n, d in declared.items()
            )
            got = s.get(DirectUpload, row.id)
            if got is None:
                raise NotFound(f"no upload in progress for {digest}", digest=digest)
            got.touched_at = now

        self.db.write(record)
        life = PART_URL_LIFETIME_S
        if whole:
            return [
                PartUrl(n, *direct.put_url(row.id, row.digest, expires_s=life)) for n in declared
            ]
        return [
            PartUrl(n, *direct.part_url(row.id, row.store_upload_id, n + 1, d, expires_s=life))
            for n, d in declared.items()
        ]

    def complete_direct_upload(self, actor: Actor, digest: str) -> StoredBlob:
        """Join, check and verify the caller's upload; store it and grant it.

        Raises:
            InvalidRequest: parts are missing (``missing_parts`` lists them).
            ContentMismatch: the bytes do not hash to ``digest`` (the upload is
                dropped: it can never complete).
            NotFound: the caller has no such upload.
        """
        direct = self._direct()
        row = self._own_upload(actor, digest)
        if row.store_upload_id == WHOLE_PUT:
            return self._complete_whole_put(actor, row)
        count = _part_count(row.size, row.part_size)
        declared = dict(
            self.db.read(
                lambda repo: repo.s.execute(
                    select(DirectUploadPart.number, DirectUploadPart.sha256).where(
                        DirectUploadPart.upload_id == row.id
                    )
                ).all()
            )
        )
        missing = [n for n in range(count) if n not in declared]
        if missing:
            raise InvalidRequest(
                f"the upload lacks parts {missing[:20]}; send them, then complete",
                missing_parts=missing[:100],
            )
        sizes = {n + 1: _part_length(row, n) for n in range(count)}
        if count == 0:  # an empty content: S3 has no zero-part uploads
            raise InvalidRequest("an empty content is uploaded whole (PUT /blobs/{digest})")
        by_number = {n + 1: declared[n] for n in range(count)}
        direct.finish(row.id, row.store_upload_id, by_number, sizes)
        sha256, check = direct.verify(row.id, row.size)
        if sha256 != digest:
            self._forget_upload(row.id)
            direct.drop(row.id)
            raise ContentMismatch(
                f"the uploaded content hashes to {sha256}, expected {digest}",
                expected=digest,
                actual=sha256,
            )
        self.claim_contents([digest])  # before the store: see claim_contents
        direct.promote(row.id, digest)
        blob = StoredBlob(digest, row.size, check)
        self.record_received(actor, [blob])
        self._forget_upload(row.id)
        return blob

    def _complete_whole_put(self, actor: Actor, row: DirectUpload) -> StoredBlob:
        """The bucket verified the bytes' SHA-256 as it took them; check it holds
        them, learn their BLAKE3 check (known, or read once), grant them."""
        direct = self._direct()
        # Claimed before looking at the store: garbage collection spares it from here.
        self.claim_contents([row.digest])
        if not direct.put_received(row.id, row.digest, row.size):
            raise InvalidRequest(
                "the bucket does not hold this upload's PUT: send it, then complete",
                missing_parts=[0],
            )
        known = self.db.read(lambda repo: repo.blob_checks([row.digest]))
        if row.digest in known:
            check = known[row.digest][1]
        else:
            check = direct.measure(row.digest, row.size)
        blob = StoredBlob(row.digest, row.size, check)
        self.record_received(actor, [blob])
        self._forget_upload(row.id)
        return blob

    def abandon_direct_upload(self, user_id: int, digest: str) -> bool:
        """Drop a user's direct upload and its parts; False if there is none."""
        direct = self._direct()
        row = self.db.read(lambda repo: _upload(repo, user_id, validate_digest(digest)))
        if row is None:
            return False
        _abort(direct, row)
        self._forget_upload(row.id)
        return True

    def sweep_direct_uploads(self, *, max_age: timedelta = DIRECT_UPLOAD_MAX_AGE) -> int:
        """Abandon direct uploads untouched for ``max_age``, and multipart
        uploads in the bucket that no record names (a crash between the two)."""
        direct = self.direct
        if direct is None:
            return 0
        cutoff = self.now() - max_age
        rows = self.db.read(lambda repo: list(repo.s.scalars(select(DirectUpload))))
        known = {r.id for r in rows}
        swept = 0
        for r in rows:
            if _aware(r.touched_at) < cutoff:
                _abort(direct, r)
                self._forget_upload(r.id)
                swept += 1
        for upload_id, store_id, begun in direct.unfinished():
            if upload_id not in known and _aware(begun) < cutoff:
                direct.abort(upload_id, store_id)
                swept += 1
        return swept

    def download_url(self, digest: str, filename: str | None = None) -> str | None:
        """A presigned URL of a stored content (saved as ``filename`` by a
        browser, if given), or None for a store without them."""
        if self.direct is None:
            return None
        return self.direct.download_url(
            digest, expires_s=DOWNLOAD_URL_LIFETIME_S, filename=filename
        )

    # -- helpers ------------------------------------------------------------------------
    def _own_upload(self, actor: Actor, digest: str) -> DirectUpload:
        validate_digest(digest)
        row = self.db.read(lambda repo: _upload(repo, actor.user_id, digest))
        if row is None:
            raise NotFound(f"no upload in progress for {digest}", digest=digest)
        return row

    def _forget_upload(self, upload_id: str) -> None:
        def fn(repo: Repo) -> None:
            repo.s.execute(delete(DirectUpload).where(DirectUpload.id == upload_id))

        self.db.write(fn)

    def _direct_state(self, row: DirectUpload) -> DirectState:
        count = _part_count(row.size, row.part_size)
        if row.store_upload_id == WHOLE_PUT:
            done = self._direct().put_received(row.id, row.digest, row.size)
            return DirectState(row.digest, row.size, row.part_size, 1, [0] if done else [])
        held = self._direct().received(row.id, row.store_upload_id)
        received = sorted(
            n - 1
            for n, part in held.items()
            if 1 <= n <= count and part.size == _part_length(row, n - 1)
        )
        return DirectState(row.digest, row.size, row.part_size, count, received)


def _upload(repo: Repo, user_id: int, digest: str) -> DirectUpload | None:
    row = repo.s.scalars(
        select(DirectUpload).where(DirectUpload.user_id == user_id, DirectUpload.digest == digest)
    ).first()
    if row is not None:
        repo.s.expunge(row)
    return row


def _abort(direct: DirectUploads, row: DirectUpload) -> None:
    """Free what the bucket holds for an upload. A whole PUT has nothing of its
    own there: its key is the content's, which others may use (an object no
    version references is garbage collection's to free)."""
    if row.store_upload_id != WHOLE_PUT:
        direct.abort(row.id, row.store_upload_id)


def _part_count(size: int, part_size: int) -> int:
    return -(-size // part_size)


def _part_length(row: DirectUpload, number: int) -> int:
    """Bytes in part ``number`` (0-based) of the upload."""
    return min(row.part_size, row.size - number * row.part_size)


def _aware(ts: datetime) -> datetime:
    """A timestamp as read back (SQLite drops the zone) in UTC."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
