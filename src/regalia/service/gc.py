"""Garbage collection: free the stored contents nothing references (issue 15).

A content is *garbage* when no version's file, no run's file and no file of a
``wandb`` draft not yet committed holds it, and it is older than the grace
period twice over: its object in the store was written before the cutoff
(``BlobInfo.modified``), and nobody *claimed* it since (``blob_claims``). A
claim says "this content is about to be referenced": every way content enters
the store claims it first (an upload's ``complete``, a whole ``PUT``, the
in-process :meth:`~regalia.service.content.ContentMixin.store_files`), and so
does every "stored already, send nothing" answer
(:meth:`~regalia.service.content.ContentMixin.referenceable_contents`), before
it looks at the store. A client has the grace period to commit what it was
told is stored.

The database decides, and one row serializes the two sides: the content's
claim row. Garbage collection works through the store's listing in batches;
for each batch, in one write transaction, it

1. locks the candidates' claim rows (``INSERT ... ON CONFLICT DO UPDATE`` that
   changes nothing, sorted by digest; a missing row is made for the length of
   the transaction), reading each ``claimed_at`` as it stands once locked;
2. looks again, in a fresh statement, for references to those not claimed
   since the cutoff;
3. deletes the objects still garbage from the store (the protocol's ``delete``
   only, so any :class:`~regalia.blobs.base.BlobStore`, S3 included), then every
   row about them (the organizations' ``blobs`` rows, checks, MD5s, grants and
   the claims), and commits.

A version's commit (:meth:`~regalia.service.artifacts.ArtifactsMixin.log_version`)
first upserts the claim rows of its contents (the same rows, the same order),
then checks the grants and the store's ``has()`` for each of them, in its
transaction. So either the commit holds the rows first, and the collection,
waiting on step 1, then sees a fresh claim and (PostgreSQL's READ COMMITTED:
each statement sees what committed before it) the version's files, and keeps
the content; or the collection holds them first and has deleted the object
and the grants by the time the commit's upsert returns, and the commit fails
with :class:`~regalia.errors.ContentNotUploaded`: the client uploads again and
retries. An answer "stored already" given before a collection locked the row
is a fresh claim it respects; one whose claim waited for it looks at the store
after and says "send it". An upload whose claim waited puts its bytes into a
store that no longer has them. On SQLite every write transaction is serialized
(``BEGIN IMMEDIATE``), which gives the same order.

Several server processes may collect at once: they serialize on the same rows,
and a content freed twice is a no-op (their reports may both count it).
Deleting the objects inside the transaction holds the rows' locks (on SQLite
the database's write lock) for a batch's deletes: :data:`GC_BATCH` bounds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from regalia.blobs.base import BlobInfo
from regalia.errors import InvalidRequest, StorageUnavailable
from regalia.service.access import require_org_admin
from regalia.service.base import as_utc
from regalia.service.content import ContentMixin
from regalia.service.views import Actor, GcReport
from regalia.store.repo import Repo

DEFAULT_GRACE = timedelta(hours=24)
"""How old an unreferenced content must be (written and last claimed) before it
is freed: longer than any upload-then-commit a client makes."""

GC_BATCH = 100
"""Contents decided (and deleted from the store) per write transaction."""

_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # the claim of a content nobody claimed


@dataclass
class _Tally:
    scanned: int = 0
    freed_bytes: int = 0
    kept_referenced: int = 0
    kept_young: int = 0
    failed: int = 0
    freed: list[str] = field(default_factory=list)


class GcMixin(ContentMixin):
    def collect_garbage(
        self, actor: Actor, *, grace: timedelta = DEFAULT_GRACE, dry_run: bool = False
    ) -> GcReport:
        """Free the stored contents nothing references that are older than
        ``grace`` (see the module docstring); with ``dry_run``, only say which.
        Org admins only (``regalia gc``, ``POST /admin/gc``).

        Raises:
            PermissionDenied: the caller is not an org admin.
            InvalidRequest: a negative grace period.
            StorageUnavailable: the store cannot be listed.
        """
        require_org_admin(actor, "collect garbage")
        return self.sweep_garbage(grace, dry_run=dry_run)

    def sweep_garbage(self, grace: timedelta = DEFAULT_GRACE, *, dry_run: bool = False) -> GcReport:
        """:meth:`collect_garbage` without an actor: the server's periodic job."""
        if grace < timedelta(0):
            raise InvalidRequest("the grace period of garbage collection cannot be negative")
        cutoff = self.now() - grace
        tally = _Tally()
        batch: list[BlobInfo] = []
        for info in self.blobs.iter_blobs():
            tally.scanned += 1
            if info.modified >= cutoff.timestamp():
                tally.kept_young += 1
                continue
            batch.append(info)
            if len(batch) >= GC_BATCH:
                self._collect_batch(batch, cutoff, dry_run, tally)
                batch = []
        if batch:
            self._collect_batch(batch, cutoff, dry_run, tally)
        return GcReport(
            dry_run=dry_run,
            grace_s=grace.total_seconds(),
            scanned=tally.scanned,
            freed_blobs=len(tally.freed),
            freed_bytes=tally.freed_bytes,
            kept_referenced=tally.kept_referenced,
            kept_young=tally.kept_young,
            failed=tally.failed,
            freed=tally.freed,
        )

    def _collect_batch(
        self, batch: Sequence[BlobInfo], cutoff: datetime, dry_run: bool, tally: _Tally
    ) -> None:
        """Decide a batch of old contents: a read sorts out the referenced and
        the claimed; the rest are locked, decided again and freed in one write."""
        sizes = {b.digest: b.size for b in batch}
        digests = sorted(sizes)

        def unlocked(repo: Repo) -> tuple[set[str], set[str]]:
            return repo.referenced_digests(digests), repo.claimed_since(digests, cutoff)

        referenced, claimed = self.db.read(unlocked)
        tally.kept_referenced += len(referenced)
        tally.kept_young += len(claimed - referenced)
        todo = [d for d in digests if d not in referenced and d not in claimed]
        if not todo:
            return
        if dry_run:
            tally.freed += todo
            tally.freed_bytes += sum(sizes[d] for d in todo)
            return

        def locked(repo: Repo) -> tuple[list[str], list[str], int, int]:
            claims = repo.lock_claims(todo, _NEVER)
            fresh = {d for d, at in claims.items() if as_utc(at) >= cutoff}
            refs = repo.referenced_digests([d for d in todo if d not in fresh])
            deleted, failed = [], []
            for digest in todo:
                if digest in fresh or digest in refs:
                    continue
                try:
                    self.blobs.delete(digest)
                except StorageUnavailable:
                    failed.append(digest)
                    continue
                deleted.append(digest)
            repo.forget_blobs(deleted)
            return deleted, failed, len(refs), len(fresh - refs)

        deleted, failed, late_refs, late_claims = self.db.write(locked)
        tally.freed += deleted
        tally.freed_bytes += sum(sizes[d] for d in deleted)
        tally.failed += len(failed)
        tally.kept_referenced += late_refs
        tally.kept_young += late_claims
