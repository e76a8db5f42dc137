"""File transfer use cases for clients that talk to a server.

A remote client hashes its files, asks which contents the store lacks
(:meth:`TransferMixin.missing_blobs`), uploads only those, then logs the
version. The server never trusts a client's claim about a content: sizes are
checked against the store and BLAKE3 checks against the one recorded when the
server received the bytes (or computed from the stored blob).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from regalia.blobs.base import STREAM_CHUNK, StoredBlob, new_check_hasher, validate_digest
from regalia.errors import InvalidRequest, NotFound
from regalia.service.reads import ReadsMixin
from regalia.service.views import Actor, FileEntry
from regalia.store.repo import Repo

MAX_DIGESTS_PER_QUERY = 10_000


class TransferMixin(ReadsMixin):
    def missing_blobs(self, actor: Actor, digests: Sequence[str]) -> list[str]:
        """The digests among ``digests`` whose content the store lacks."""
        if len(digests) > MAX_DIGESTS_PER_QUERY:
            raise InvalidRequest(
                f"ask about at most {MAX_DIGESTS_PER_QUERY} digests at once", count=len(digests)
            )
        return [d for d in dict.fromkeys(digests) if not self.blobs.has(validate_digest(d))]

    def adopt_blob(self, path: Path, blob: StoredBlob) -> StoredBlob:
        """Move a received, verified file into the store and remember its check."""
        stored = self.blobs.adopt(path, blob)
        self.db.write(lambda repo: repo.record_blob_check(stored.digest, stored.size, stored.check))
        return stored

    def verified_files(self, actor: Actor, files: Sequence[FileEntry]) -> list[FileEntry]:
        """A client's manifest with sizes and checks confirmed by the store.

        Raises:
            InvalidRequest: a content is not stored (upload it first), or the
                manifest gives a size or check that does not match it.
        """
        digests = [validate_digest(f.digest) for f in files]
        known = self.db.read(lambda repo: repo.blob_checks(digests))
        out = []
        for f in files:
            if f.digest not in known:
                known[f.digest] = self._measure(f.digest)
            size, check = known[f.digest]
            if f.size != size or (f.check is not None and f.check != check):
                raise InvalidRequest(
                    f"file {f.path!r}: the stored content {f.digest[:12]}... is {size} bytes "
                    f"with check {check}; the manifest says {f.size} bytes, check {f.check}",
                    path=f.path,
                )
            out.append(FileEntry(f.path, f.digest, size, check))
        return out

    def _measure(self, digest: str) -> tuple[int, str]:
        """Size and BLAKE3 check of a stored blob (read once, then remembered)."""
        try:
            hasher = new_check_hasher()
            size = 0
            with self.blobs.open(digest) as stream:
                while chunk := stream.read(STREAM_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
        except NotFound:
            raise InvalidRequest(
                f"content {digest} is not in the blob store; upload it first", digest=digest
            ) from None
        check = f"blake3:{hasher.hexdigest()}"

        def fn(repo: Repo) -> None:
            repo.record_blob_check(digest, size, check)

        self.db.write(fn)
        return size, check

    def blob_for_download(self, actor: Actor, membership_id: int, digest: str) -> FileEntry:
        """The file entry of ``digest`` in a version the caller may download.

        Raises:
            VersionNotFound: the version does not exist or is not visible.
            PermissionDenied: the caller may see but not download it (SPEC §4).
            NotFound: the version has no file with that content.
        """
        validate_digest(digest)

        def fn(repo: Repo) -> FileEntry | None:
            ctx = self._ctx(repo, actor, membership_id)
            self._require_download(actor, ctx)
            found = repo.file_by_digest(ctx.membership.version_id, digest)
            return None if found is None else FileEntry(*found)

        entry = self.db.read(fn)
        if entry is None:
            raise NotFound(f"version {membership_id} has no file with content {digest}")
        return entry

    def known_check(self, digest: str) -> tuple[int, str]:
        """Size and BLAKE3 check of a stored content."""
        known = self.db.read(lambda repo: repo.blob_checks([digest]))
        return known[digest] if digest in known else self._measure(digest)
