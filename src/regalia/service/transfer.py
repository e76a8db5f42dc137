"""File transfer use cases for clients that talk to a server.

A remote client hashes its files, asks which contents it must send
(:meth:`TransferMixin.missing_blobs`: those it may not already reference, see
:mod:`regalia.service.content`), uploads only those, then logs the version.
The server never trusts a client's claim about a content: sizes are checked
against the store and BLAKE3 checks against the one recorded when the server
received the bytes (or computed from the stored blob).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from regalia.blobs.base import StoredBlob, validate_digest
from regalia.errors import InvalidRequest, NotFound
from regalia.service.reads import ReadsMixin
from regalia.service.views import Actor, FileEntry
from regalia.store.repo import Repo

MAX_DIGESTS_PER_QUERY = 10_000


class TransferMixin(ReadsMixin):
    def missing_blobs(self, actor: Actor, digests: Sequence[str]) -> list[str]:
        """The digests among ``digests`` the caller must upload before a version
        of theirs may reference them: those not in :meth:`referenceable_contents`.

        A content the caller may not read is reported missing whether or not it
        is stored (uploading it proves possession), so the answer tells nothing
        about other users' contents.

        Raises:
            InvalidRequest: too many digests, or a malformed one.
        """
        if len(digests) > MAX_DIGESTS_PER_QUERY:
            raise InvalidRequest(
                f"ask about at most {MAX_DIGESTS_PER_QUERY} digests at once", count=len(digests)
            )
        wanted = list(dict.fromkeys(validate_digest(d) for d in digests))
        present = self.referenceable_contents(actor, wanted)
        return [d for d in wanted if d not in present]

    def adopt_blob(self, actor: Actor, path: Path, blob: StoredBlob) -> StoredBlob:
        """Move a file the server received from ``actor`` and hashed into the
        store, remember its check and grant ``actor`` the right to reference it.

        If the content is stored already the file is dropped, and the answer is
        the same as for a first upload (it describes the bytes the caller sent).
        """
        self.claim_contents([blob.digest])  # before the store: see claim_contents
        stored = self.blobs.adopt(path, blob)
        self.record_received(actor, [stored])
        return stored

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

    def stored_content(self, actor: Actor, digest: str) -> tuple[int, str] | None:
        """Size and BLAKE3 check of a content the caller may reference; None for
        any other (stored or not), so the answer reveals nothing."""
        if digest not in self.referenceable_contents(actor, [digest]):
            return None
        known = self.db.read(lambda repo: repo.blob_checks([digest]))
        return known[digest] if digest in known else self._measure(digest)
