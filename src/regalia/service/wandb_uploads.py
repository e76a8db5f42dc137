"""How the `wandb` client logs a version, onto :meth:`log_version` (issue 14).

The client logs in steps: it declares the artifact (``createArtifact``: a
*draft*, with W&B's artifact digest), asks where to send each file (by MD5),
PUTs the bytes and a manifest, then commits. A draft is only a record of
those steps: the commit is one call to :meth:`log_version`, with the files
(path, SHA-256, size) the uploads established, so the version, its aliases,
tags, run (lineage), history and automations are the same as for any other
client; nothing else writes versions.

Contents stay identified by SHA-256. Each stored content's MD5 (W&B's digest)
is kept beside it (``blob_md5s``), so a content either client sent is found
by the W&B client's MD5 and verified by both. Whether a file needs uploading
follows the service's one rule (:meth:`referenceable_contents`): only
content the caller sent or may download is "already stored".

A draft's id on the wire is :data:`DRAFT_ID_BASE` plus its row id, far above
every version id; once committed it names the version it became
(:meth:`version_by_id`), which is how the client, holding the id
``createArtifact`` gave it, goes on to read and link the version.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from regalia.blobs.base import STREAM_CHUNK, StoredBlob
from regalia.core.jsonvalues import validate_metadata, validate_text
from regalia.core.names import (
    MAX_RUN_KEY,
    name_key,
    validate_alias,
    validate_artifact_name,
    validate_entity_name,
    validate_label,
    validate_manifest_paths,
    validate_tag,
)
from regalia.errors import (
    ArtifactNotFound,
    ContentNotUploaded,
    InvalidRequest,
    PermissionDenied,
    TypeMismatch,
    VersionNotFound,
)
from regalia.service.access import require_entity
from regalia.service.content import GRANT_LIFETIME
from regalia.service.transfer import TransferMixin
from regalia.service.views import Actor, FileEntry, VersionView
from regalia.store.models import BlobMd5, User, Version, WandbDraft, WandbDraftFile
from regalia.store.repo import Repo

DRAFT_ID_BASE = 2**62
"""Wire ids of drafts start here: version ids never get this far."""

MAX_MANIFEST_ENTRIES = 100_000
LEARN_MD5_BYTES = 1 << 30
"""Bytes of stored contents read at most, per request for upload URLs, to learn
the MD5s of the artifact's latest version (its files Regalia's SDK stored)."""
_MD5 = re.compile(r"[0-9a-f]{32}")
LATEST = "latest"


@dataclass(frozen=True)
class Draft:
    """A draft as its creator sees it."""

    wire_id: int
    entity: str
    project: str
    name: str
    type: str
    user_id: int
    version_id: int | None  # set once committed


def validate_md5(value: str) -> str:
    """A hex MD5 (32 lowercase hex digits)."""
    if not isinstance(value, str) or not _MD5.fullmatch(value):
        raise InvalidRequest(f"{value!r} is not an MD5 (32 hex digits)")
    return value


def md5_of_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(STREAM_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _draft(row: WandbDraft) -> Draft:
    return Draft(
        DRAFT_ID_BASE + row.id,
        row.entity,
        row.project,
        row.name,
        row.type,
        row.user_id,
        row.version_id,
    )


class WandbUploadsMixin(TransferMixin):
    # -- ids -------------------------------------------------------------------------------
    def version_by_id(self, actor: Actor, version_id: int) -> VersionView:
        """A source version by id; a draft's id names the version it became
        (404 while it is not committed, and for anyone but its creator)."""
        if version_id > DRAFT_ID_BASE:
            draft = self.wandb_draft(actor, version_id)
            if draft.version_id is None:
                raise VersionNotFound(
                    f"artifact {draft.name!r} is not committed yet", ref=str(version_id)
                )
            version_id = draft.version_id
        return super().version_by_id(actor, version_id)

    def wandb_draft(self, actor: Actor, wire_id: int) -> Draft:
        """The caller's draft with this wire id.

        Raises:
            ArtifactNotFound: no such draft, or another user's.
        """
        row_id = wire_id - DRAFT_ID_BASE

        def fn(repo: Repo) -> Draft:
            row = repo.get(WandbDraft, row_id) if 0 < row_id <= DRAFT_ID_BASE else None
            if row is None or row.user_id != actor.user_id or row.org_id != actor.org_id:
                raise ArtifactNotFound(f"artifact {wire_id} not found (or not yours to upload to)")
            return _draft(row)

        return self.db.read(fn)

    def uploader(self, user_id: int) -> Actor:
        """The user a signed upload URL was issued to, as they are now.

        Raises:
            PermissionDenied: the user no longer exists or has no working key.
        """

        def fn(repo: Repo) -> Actor:
            user = repo.get(User, user_id)
            if user is None or not repo.has_active_key(user_id):
                raise PermissionDenied("the user this upload URL was issued to may not upload")
            return self._actor(repo, user)

        return self.db.read(fn)

    # -- createArtifact ----------------------------------------------------------------------
    def create_wandb_draft(
        self,
        actor: Actor,
        *,
        entity: str,
        project: str,
        name: str,
        type: str,
        digest: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_key: str | None = None,
    ) -> Draft | VersionView:
        """Start logging a version of ``entity/project/name``.

        ``digest`` is W&B's artifact digest. When a committed version of this
        artifact was logged with the same digest (the same files), that version
        is returned instead (its aliases and tags updated as a log would), and
        the client uploads nothing.

        Raises:
            InvalidName, InvalidRequest: a bad name, digest, alias, tag or metadata.
            PermissionDenied: the caller may not log into ``entity/project``.
        """
        validate_entity_name(entity, "entity name")
        validate_entity_name(project, "project name")
        validate_artifact_name(name)
        validate_artifact_name(type, "artifact type")
        validate_md5(digest)
        custom = [validate_alias(a) for a in aliases if name_key(a) != LATEST]
        tags = list(dict.fromkeys(validate_tag(t) for t in tags))
        validate_metadata(metadata)
        validate_text(description, "the description")
        if run_key is not None:
            validate_label(run_key, "run key", MAX_RUN_KEY)
        require_entity(actor, entity, project, "log artifacts")
        existing = self._same_digest(actor, entity, project, name, type, digest)
        if existing is not None:
            view = self.get_version(actor, existing)
            if custom:
                view = self.add_aliases(actor, view.membership_id, custom)
            if tags:
                view = self.update_version(actor, view.membership_id, add_tags=tags)
            return view

        def fn(repo: Repo) -> Draft:
            row = repo.add(
                WandbDraft(
                    org_id=actor.org_id,
                    user_id=actor.user_id,
                    entity=entity,
                    project=project,
                    name=name,
                    name_key=name_key(name),
                    type=type,
                    digest=digest,
                    description=description,
                    metadata_=metadata,
                    aliases=custom,
                    tags=tags,
                    run_key=run_key,
                    created_at=self.now(),
                )
            )
            repo.s.flush()
            return _draft(row)

        return self.db.write(fn)

    def _same_digest(
        self, actor: Actor, entity: str, project: str, name: str, type: str, digest: str
    ) -> int | None:
        """The source membership of a committed version of ``entity/project/name``
        that the client logged with W&B digest ``digest``, if any.

        Raises:
            TypeMismatch: the artifact exists with another type (said now, before
                the client uploads anything; :meth:`log_version` would refuse it).
        """

        def fn(repo: Repo) -> int | None:
            proj = repo.project(actor.org_id, entity, project)
            seq = repo.sequence(proj.id, name) if proj is not None else None
            if seq is None:
                return None
            if seq.type != type:
                raise TypeMismatch(
                    f"artifact {entity}/{project}/{name} has type {seq.type!r}; "
                    f"cannot log a version of type {type!r}",
                    existing_type=seq.type,
                    type=type,
                )
            found = repo.s.execute(
                select(Version.id)
                .join(WandbDraft, WandbDraft.version_id == Version.id)
                .where(
                    WandbDraft.org_id == actor.org_id,
                    WandbDraft.name_key == name_key(name),
                    WandbDraft.digest == digest,
                    Version.sequence_id == seq.id,
                )
                .limit(1)
            ).scalar()
            if found is None:
                return None
            m = repo.membership_of_version(seq.id, found)
            return None if m is None else m.id

        return self.db.read(fn)

    # -- createArtifactFiles ---------------------------------------------------------------
    def wandb_files_to_upload(
        self, actor: Actor, wire_id: int, files: Mapping[str, str]
    ) -> set[str]:
        """Of the draft's ``files`` (path -> hex MD5), the paths whose bytes must be
        uploaded. The others name a stored content the caller may reference
        (:meth:`referenceable_contents`), which the draft now holds."""
        draft = self.wandb_draft(actor, wire_id)
        self._pending(draft)
        validate_manifest_paths(files)
        for md5 in files.values():
            validate_md5(md5)
        wanted = set(files.values())
        known = self._referenceable_by_md5(actor, wanted)
        if wanted - set(known) and self._learn_md5s_of_latest(actor, draft):
            known = self._referenceable_by_md5(actor, wanted)
        held = {p: known[m] for p, m in files.items() if m in known}
        if held:
            self._hold(draft, {p: (files[p], d, n) for p, (d, n) in held.items()})
        return set(files) - set(held)

    def _learn_md5s_of_latest(self, actor: Actor, draft: Draft) -> bool:
        """Record the MD5s of the files of the artifact's latest version that have
        none yet (contents Regalia's own clients stored: only SHA-256 is known),
        so that a new version sharing them needs no upload. Bounded by
        :data:`LEARN_MD5_BYTES`; returns whether any was learnt."""

        def fn(repo: Repo) -> list[tuple[str, int]]:
            proj = repo.project(actor.org_id, draft.entity, draft.project)
            seq = repo.sequence(proj.id, draft.name) if proj is not None else None
            top = repo.highest_membership(seq.id) if seq is not None else None
            if top is None:
                return []
            digests = {d: n for _, d, n, _ in repo.files(top.version_id)}
            have = set(
                repo.s.execute(
                    select(BlobMd5.digest).where(BlobMd5.digest.in_(list(digests)))
                ).scalars()
            )
            return [(d, n) for d, n in digests.items() if d not in have]

        todo = self.db.read(fn)
        chosen, total = [], 0
        for digest, size in todo:
            if total + size > LEARN_MD5_BYTES:
                break
            chosen.append(digest)
            total += size
        chosen = [d for d in chosen if self.blobs.has(d)]
        if chosen:
            self.md5s(chosen)
        return bool(chosen)

    def _referenceable_by_md5(self, actor: Actor, md5s: set[str]) -> dict[str, tuple[str, int]]:
        """For each MD5, the one stored content the caller may reference with it
        ((SHA-256, size)); an MD5 that two such contents share is left out (the
        bytes are sent, so the version holds exactly what the client has)."""
        if not md5s:
            return {}
        rows = self.db.read(
            lambda repo: repo.s.execute(
                select(BlobMd5.md5, BlobMd5.digest).where(BlobMd5.md5.in_(sorted(md5s)))
            ).all()
        )
        allowed = self.referenceable_contents(actor, [d for _, d in rows])
        by_md5: dict[str, list[str]] = {}
        for md5, digest in rows:
            if digest in allowed:
                by_md5.setdefault(md5, []).append(digest)
        single = {m: ds[0] for m, ds in by_md5.items() if len(ds) == 1}
        sizes = self.db.read(lambda repo: repo.blob_checks(list(single.values())))
        out = {}
        for md5, digest in single.items():
            size = sizes[digest][0] if digest in sizes else self.blobs.size(digest)
            out[md5] = (digest, size)
        return out

    def _hold(self, draft: Draft, files: Mapping[str, tuple[str, str, int]]) -> None:
        """Record that the draft's files (path -> (md5, sha256, size)) are known."""
        row_id = draft.wire_id - DRAFT_ID_BASE

        def fn(repo: Repo) -> None:
            repo.s.execute(
                delete(WandbDraftFile).where(
                    WandbDraftFile.draft_id == row_id, WandbDraftFile.path.in_(list(files))
                )
            )
            for path, (md5, digest, size) in files.items():
                repo.add(
                    WandbDraftFile(draft_id=row_id, path=path, md5=md5, digest=digest, size=size)
                )

        self.db.write(fn)

    @staticmethod
    def _pending(draft: Draft) -> None:
        if draft.version_id is not None:
            raise InvalidRequest(
                f"artifact {draft.name!r} is committed already; log a new version instead"
            )

    # -- the signed PUTs ------------------------------------------------------------------------
    def receive_wandb_file(
        self,
        actor: Actor,
        wire_id: int,
        path: str,
        md5: str,
        received: Path,
        blob: StoredBlob,
    ) -> StoredBlob:
        """Store a file the server received for a draft and hashed (SHA-256 and
        check in ``blob``, MD5 ``md5``, already verified against the one the
        upload URL was issued for): the content is stored once, its MD5 kept,
        the caller granted it, the draft holds it."""
        draft = self.wandb_draft(actor, wire_id)
        self._pending(draft)
        stored = self.adopt_blob(actor, received, blob)
        self.record_md5s({stored.digest: md5})
        self._hold(draft, {path: (md5, stored.digest, stored.size)})
        return stored

    def record_md5s(self, md5s: Mapping[str, str]) -> None:
        """Remember the MD5 (hex) of stored contents (SHA-256 -> MD5)."""
        if not md5s:
            return

        def fn(repo: Repo) -> None:
            have = set(
                repo.s.execute(
                    select(BlobMd5.digest).where(BlobMd5.digest.in_(list(md5s)))
                ).scalars()
            )
            for digest, md5 in md5s.items():
                if digest not in have:
                    repo.add(BlobMd5(digest=digest, md5=md5))

        self.db.write(fn)

    def md5s(self, digests: Sequence[str]) -> dict[str, str]:
        """The hex MD5 of each stored content (SHA-256 -> MD5), computed once
        and remembered for contents stored without one (Regalia's own uploads).
        For contents the caller already may read: reading is not checked here."""
        wanted = list(dict.fromkeys(digests))
        if not wanted:
            return {}
        known = dict(
            self.db.read(
                lambda repo: repo.s.execute(
                    select(BlobMd5.digest, BlobMd5.md5).where(BlobMd5.digest.in_(wanted))
                ).all()
            )
        )
        missing = {}
        for digest in wanted:
            if digest not in known:
                path = self.blobs.local_path(digest)
                if path is not None:
                    missing[digest] = md5_of_file(path)
                else:
                    h = hashlib.md5(usedforsecurity=False)
                    with self.blobs.open(digest) as stream:
                        while chunk := stream.read(STREAM_CHUNK):
                            h.update(chunk)
                    missing[digest] = h.hexdigest()
        self.record_md5s(missing)
        return {**known, **missing}

    def set_wandb_manifest(
        self,
        actor: Actor,
        wire_id: int,
        entries: Mapping[str, tuple[str, int]],
        references: Sequence[str] = (),
    ) -> None:
        """The draft's manifest (path -> (hex MD5, size)) as the client PUT it, and
        the paths of its references (refused at commit, where the client shows why)."""
        draft = self.wandb_draft(actor, wire_id)
        self._pending(draft)
        if len(entries) > MAX_MANIFEST_ENTRIES:
            raise InvalidRequest(f"a manifest lists at most {MAX_MANIFEST_ENTRIES} files")
        validate_manifest_paths(entries)
        for md5, size in entries.values():
            validate_md5(md5)
            if not isinstance(size, int) or size < 0:
                raise InvalidRequest(f"a manifest entry's size must be a whole number: {size!r}")
        row_id = draft.wire_id - DRAFT_ID_BASE

        def fn(repo: Repo) -> None:
            row = repo.get(WandbDraft, row_id)
            assert row is not None
            row.manifest = {
                "files": {p: [m, n] for p, (m, n) in entries.items()},
                "references": list(references)[:MAX_MANIFEST_ENTRIES],
            }

        self.db.write(fn)

    # -- commitArtifact ------------------------------------------------------------------------
    def commit_wandb_draft(self, actor: Actor, wire_id: int) -> VersionView:
        """Log the draft as a version: one :meth:`log_version` call with the files
        of its manifest (each a content its uploads or the store established).
        Committing again answers the same version.

        Raises:
            InvalidRequest: no manifest yet, or a file's size differs from its content's.
            ContentNotUploaded: a file whose content was neither uploaded nor
                is one the caller may reference.
        """
        draft = self.wandb_draft(actor, wire_id)
        if draft.version_id is not None:
            return super().version_by_id(actor, draft.version_id)
        row_id = draft.wire_id - DRAFT_ID_BASE

        def read(repo: Repo) -> tuple[dict[str, Any], dict[str, tuple[str, str, int]]]:
            row = repo.get(WandbDraft, row_id)
            assert row is not None
            held = repo.s.execute(
                select(WandbDraftFile).where(WandbDraftFile.draft_id == row_id)
            ).scalars()
            what = {
                "manifest": row.manifest,
                "description": row.description,
                "metadata": row.metadata_,
                "aliases": list(row.aliases),
                "tags": list(row.tags),
                "run_key": row.run_key,
            }
            return what, {f.path: (f.md5, f.digest, f.size) for f in held}

        row, held = self.db.read(read)
        if row["manifest"] is None:
            raise InvalidRequest(
                f"artifact {draft.name!r} has no manifest yet; upload it before committing"
            )
        refs = row["manifest"].get("references") or []
        if refs:
            shown = ", ".join(repr(r) for r in refs[:3]) + (", ..." if len(refs) > 3 else "")
            raise InvalidRequest(
                f"artifact {draft.name!r} holds references ({shown}); "
                "Regalia keeps the files themselves: add them with add_file/add_dir, not "
                "add_reference",
                references=refs[:20],
            )
        entries = {p: (str(m), int(n)) for p, (m, n) in row["manifest"]["files"].items()}
        unknown = {m for p, (m, _) in entries.items() if p not in held or held[p][0] != m}
        found = self._referenceable_by_md5(actor, unknown)
        files = []
        for path, (md5, size) in sorted(entries.items()):
            f = held.get(path)
            if f is not None and f[0] == md5:
                digest, stored = f[1], f[2]
            elif md5 in found:
                digest, stored = found[md5]
            else:
                raise ContentNotUploaded(
                    f"file {path!r}: its content (MD5 {md5}) has not been uploaded by you; "
                    "upload it first (a version may reference only content you sent or may "
                    "already download)",
                    path=path,
                )
            if stored != size:
                raise InvalidRequest(
                    f"file {path!r}: the manifest says {size} bytes; its content has {stored}",
                    path=path,
                )
            files.append(FileEntry(path, digest, size))
        view = self.log_version(
            actor,
            entity=draft.entity,
            project=draft.project,
            name=draft.name,
            type=draft.type,
            files=files,
            description=row["description"],
            metadata=row["metadata"],
            aliases=row["aliases"],
            tags=row["tags"],
            run_key=row["run_key"],
        )

        def done(repo: Repo) -> None:
            r = repo.get(WandbDraft, row_id)
            if r is not None:
                r.version_id = view.version_id
                r.manifest = None
            repo.s.execute(delete(WandbDraftFile).where(WandbDraftFile.draft_id == row_id))

        self.db.write(done)
        return view

    def expire_wandb_drafts(self) -> int:
        """Delete drafts never committed (or whose version was deleted) older than
        :data:`~regalia.service.content.GRANT_LIFETIME` (the server's sweep);
        returns how many. Their uploaded contents go the way of any content
        sent but never logged."""
        cutoff = self.now() - GRANT_LIFETIME

        def fn(repo: Repo) -> int:
            ids = list(
                repo.s.execute(
                    select(WandbDraft.id).where(
                        WandbDraft.version_id.is_(None), WandbDraft.created_at < cutoff
                    )
                ).scalars()
            )
            if ids:
                repo.s.execute(delete(WandbDraftFile).where(WandbDraftFile.draft_id.in_(ids)))
                repo.s.execute(delete(WandbDraft).where(WandbDraft.id.in_(ids)))
            return len(ids)

        return self.db.write(fn)
