"""Who may reference which stored content (SPEC §7: deduplication never grants access).

Contents are stored once by SHA-256, but knowing a digest gives no right to
its bytes. A version may reference a content only if the acting user

* sent those bytes: the server hashed them as they arrived (``PUT /blobs``, an
  upload's ``complete``) or the in-process store did (:meth:`store_file`).
  That records a *grant* (user, digest), valid for :data:`GRANT_LIFETIME`;
  sending known bytes again renews it; or
* may already download a version holding it (SPEC §4: ``viewer`` or higher in
  a registry where it is linked, or the source artifact's own entity).

Everything that answers about a content (which are missing, whether an upload
is needed, a manifest's sizes and checks) treats content the caller may not
reference exactly like content nobody stored: same answer, same error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from regalia.blobs.base import (
    STREAM_CHUNK,
    ProgressSink,
    StoredBlob,
    new_check_hasher,
    validate_check,
    validate_digest,
)
from regalia.core.roles import (
    OrgRole,
    Permission,
    RegistryRole,
    Visibility,
    allows,
    implied_by_org,
)
from regalia.errors import ContentNotUploaded, InvalidRequest, NotFound
from regalia.service.base import ServiceBase
from regalia.service.views import Actor, FileEntry
from regalia.store.repo import Repo

GRANT_LIFETIME = timedelta(days=7)
"""How long having sent a content lets a user reference it; afterwards only the
versions they may download do (the server's sweep deletes expired grants)."""

HOLDERS_SCANNED = 200
"""Versions looked at per content when deciding whether the caller may download
one holding it (the first found by the index): a content held by more versions
than this, none of the first of which the caller may download, must be uploaded
(sent once, then a grant covers it). It bounds the cost of the check, and of
asking about a popular content one may not read."""

DOWNLOAD_ROLES = tuple(r.value for r in RegistryRole if allows(r, Permission.FILES_DOWNLOAD))


def not_uploaded(digest: str, path: str | None = None) -> ContentNotUploaded:
    """The one refusal for content the caller may not reference, stored or not."""
    where = f"file {path!r}: " if path is not None else ""
    details = {"digest": digest} if path is None else {"path": path, "digest": digest}
    return ContentNotUploaded(
        f"{where}content {digest} has not been uploaded by you; upload it first "
        "(a version may reference only content you sent or may already download)",
        **details,
    )


class ChecksUnknown(Exception):
    """Raised inside a transaction: these stored contents have no recorded check
    yet; measure them (:meth:`ContentMixin.measure`) outside it and retry."""

    def __init__(self, digests: Sequence[str]) -> None:
        super().__init__(f"{len(digests)} contents without a recorded check")
        self.digests = list(digests)


def _validate(files: Sequence[FileEntry]) -> None:
    for f in files:
        validate_digest(f.digest)
        if f.check is not None:
            validate_check(f.check)


class ContentMixin(ServiceBase):
    # -- receiving content ---------------------------------------------------------------
    def store_file(
        self, actor: Actor, local_path: Path, progress: ProgressSink | None = None
    ) -> StoredBlob:
        """Put a local file into the blob store (once per content) and grant
        ``actor`` the right to reference it.

        Returns its ``StoredBlob(digest, size, check)``, ``check`` being the BLAKE3
        that downloads verify (``FileEntry.check``).

        Raises:
            FileMissing, FileChanged, InvalidRequest: the file cannot be read whole.
            StorageUnavailable: the blob store could not be written.
        """
        return self.store_files(actor, [local_path], progress)[0]

    def store_files(
        self, actor: Actor, paths: Sequence[Path], progress: ProgressSink | None = None
    ) -> list[StoredBlob]:
        """:meth:`store_file` for several files; the grants are one write."""
        blobs = [self.blobs.put_file(Path(p), progress=progress) for p in paths]
        self.claim_contents([b.digest for b in blobs])
        # A content stored already was kept, not copied: if garbage collection
        # freed it before the claim, store it again (the claim now protects it).
        for i, p in enumerate(paths):
            if not self.blobs.has(blobs[i].digest):
                blobs[i] = self.blobs.put_file(Path(p))
        self.record_received(actor, blobs)
        return blobs

    def claim_contents(self, digests: Sequence[str]) -> None:
        """Say that these contents are about to be referenced: garbage collection
        spares them for its grace period (:mod:`regalia.service.gc`). Every way
        content enters the store, or a client is told it need not send it, claims
        it first and looks at the store after."""
        if digests:
            now = self.now()
            self.db.write(lambda repo: repo.claim_blobs(digests, now))

    def record_received(self, actor: Actor, blobs: Sequence[StoredBlob]) -> None:
        """``actor`` sent these contents, hashed on arrival: remember their checks
        and grant (or renew) the actor's right to reference them."""
        if not blobs:
            return

        def fn(repo: Repo) -> None:
            repo.record_blob_checks([(b.digest, b.size, b.check) for b in blobs])
            repo.grant_blobs(actor.org_id, actor.user_id, [b.digest for b in blobs], self.now())

        self.db.write(fn)

    # -- the rule ------------------------------------------------------------------------
    def referenceable_contents(self, actor: Actor, digests: Sequence[str]) -> set[str]:
        """The digests among ``digests`` whose content is stored and that ``actor``
        may reference in a version: they sent the bytes (a grant younger than
        :data:`GRANT_LIFETIME`) or may download a version that holds them.

        This is the one answer to "does the caller need to upload this?": every
        digest not returned must be uploaded (which proves possession), whether
        or not anyone stored it. The REST API's ``/blobs/missing`` and
        ``POST /uploads`` use it, and so must any other protocol's "already
        stored, no upload URL" answer (the W&B adapter's ``uploadUrl: null``).
        At most two indexed queries (grants by primary key; for the others the
        org's blob rows by primary key, each with an ``EXISTS`` over at most
        :data:`HOLDERS_SCANNED` versions found through ``version_files.digest``),
        then a claim on the digests that passed (garbage collection spares
        them for its grace period) and a look at the blob store for them.

        Raises:
            InvalidRequest: a digest is not 64 lowercase hex digits.
        """
        wanted = list(dict.fromkeys(validate_digest(d) for d in digests))
        allowed = self.db.read(lambda repo: self._may_reference(repo, actor, wanted))
        # Claimed before the store is asked: a content garbage collection has not
        # freed by then is safe for its grace period (the client commits in it).
        self.claim_contents([d for d in wanted if d in allowed])
        return {d for d in wanted if d in allowed and self.blobs.has(d)}

    def _may_reference(self, repo: Repo, actor: Actor, digests: Sequence[str]) -> set[str]:
        """Of ``digests``, those ``actor`` holds a grant for or may download (one
        query on the grants; a second only for the digests without one)."""
        if not digests:
            return set()
        allowed = repo.granted_digests(actor.user_id, digests, self.now() - GRANT_LIFETIME)
        rest = [d for d in digests if d not in allowed]
        if rest:
            allowed |= repo.downloadable_digests(
                actor.org_id,
                actor.user_id,
                rest,
                scan=HOLDERS_SCANNED,
                everything=actor.is_org_admin,
                entity_keys=sorted({actor.name.lower(), *(t.lower() for t in actor.team_names)}),
                team_ids=list(actor.team_ids),
                roles=DOWNLOAD_ROLES,
                org_visible=allows(
                    implied_by_org(OrgRole(actor.org_role), Visibility.ORGANIZATION),
                    Permission.FILES_DOWNLOAD,
                ),
            )
        return allowed

    def verified_files(self, actor: Actor, files: Sequence[FileEntry]) -> list[FileEntry]:
        """A manifest whose every content ``actor`` may reference, with sizes and
        checks confirmed by the store (the client's claim is never trusted).

        ``log_version`` applies the same rule (in its own transaction), whichever
        way the request came. A content the caller may not reference is refused
        with the same error whether or not it is stored, and its size and check
        are never shown; a mismatch for content the caller may reference says
        what the store holds.

        Raises:
            ContentNotUploaded: a content the caller neither sent nor may download.
            InvalidRequest: a malformed digest or check, or a size or check that
                does not match the stored content.
        """
        _validate(files)
        try:
            return self.db.read(lambda repo: self._confirmed_files(repo, actor, files))
        except ChecksUnknown as unknown:
            self.measure(unknown.digests)
            return self.db.read(lambda repo: self._confirmed_files(repo, actor, files))

    def _confirmed_files(
        self, repo: Repo, actor: Actor, files: Sequence[FileEntry]
    ) -> list[FileEntry]:
        """:meth:`verified_files` inside a transaction: one query for the rule, one
        for the checks. Raises :class:`ChecksUnknown` if the store holds a content
        whose check was never recorded (measure it outside the transaction, retry)."""
        if not files:
            return []
        digests = list(dict.fromkeys(f.digest for f in files))
        allowed = self._may_reference(repo, actor, digests)
        for f in files:
            if f.digest not in allowed:
                raise not_uploaded(f.digest, f.path)
        known = repo.blob_checks(digests)
        unknown = [d for d in digests if d not in known]
        if unknown:
            raise ChecksUnknown(unknown)
        out = []
        for f in files:
            size, check = known[f.digest]
            if f.size != size or (f.check is not None and f.check != check):
                raise InvalidRequest(
                    f"file {f.path!r}: the stored content {f.digest[:12]}... is {size} bytes "
                    f"with check {check}; the manifest says {f.size} bytes, check {f.check}",
                    path=f.path,
                )
            out.append(FileEntry(f.path, f.digest, size, check))
        return out

    def measure(self, digests: Sequence[str]) -> None:
        """Read stored contents whose checks are unknown and record their checks
        (for :class:`ChecksUnknown`; only for content the caller may reference)."""
        for digest in digests:
            self._measure(digest)

    def expire_grants(self) -> int:
        """Delete grants older than :data:`GRANT_LIFETIME` (the server's sweep);
        returns how many."""
        cutoff = self.now() - GRANT_LIFETIME
        return self.db.write(lambda repo: repo.expire_grants(cutoff))

    def _measure(self, digest: str) -> tuple[int, str]:
        """Size and BLAKE3 check of a stored blob (read once, then remembered).
        Only for content the caller may reference."""
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
        self.db.write(lambda repo: repo.record_blob_check(digest, size, check))
        return size, check
