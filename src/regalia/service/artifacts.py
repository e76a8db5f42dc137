"""Use cases on versions: log, link, aliases, tags, unlink, delete, resolve (R1-R11)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from regalia.blobs.base import validate_check, validate_digest
from regalia.core.jsonvalues import validate_metadata, validate_text
from regalia.core.names import (
    MAX_ID,
    MAX_RUN_KEY,
    name_key,
    parse_target,
    removable,
    removable_alias,
    validate_alias,
    validate_artifact_name,
    validate_entity_name,
    validate_label,
    validate_manifest_paths,
    validate_tag,
)
from regalia.core.roles import Permission, RegistryRole
from regalia.errors import (
    AliasNotFound,
    InvalidRequest,
    PermissionDenied,
    ProtectedAlias,
    TypeMismatch,
    VersionNotFound,
)
from regalia.service.access import (
    can_use_entity,
    check,
    effective_roles,
    registry_role,
    require_entity,
    visible_registry,
)
from regalia.service.content import ChecksUnknown, ContentMixin, not_uploaded
from regalia.service.views import Actor, FileEntry, VersionView
from regalia.store.models import Collection, Membership, Project, Registry, Version
from regalia.store.repo import Repo

LATEST = "latest"


@dataclass
class _Ctx:
    """A membership with what is needed to authorize actions on it."""

    membership: Membership
    collection: Collection
    registry: Registry | None
    role: RegistryRole | None
    project: Project | None  # the sequence's project, for source memberships


def manifest_digest(files: Sequence[FileEntry]) -> str:
    """The content digest of a version: SHA-256 over its sorted (path, digest, size)."""
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.path):
        h.update(f"{f.path}\t{f.digest}\t{f.size}\n".encode())
    return h.hexdigest()


def _dedupe(names: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for n in names:
        seen.setdefault(name_key(n), n)
    return list(seen.values())


def validate_alias_or_latest(alias: str) -> str | None:
    """An alias of ``exactly=``: ``latest`` (managed, so left out) gives None."""
    if isinstance(alias, str) and name_key(alias) == LATEST:
        return None
    return validate_alias(alias)


class ArtifactsMixin(ContentMixin):
    # -- helpers -----------------------------------------------------------------
    def _ctx(self, repo: Repo, actor: Actor, membership_id: int) -> _Ctx:
        # An id past the database's integers cannot exist (and must not reach SQL).
        found = repo.membership_context(membership_id) if 0 < membership_id <= MAX_ID else None
        if found is None:
            raise VersionNotFound(f"artifact version {membership_id} not found")
        m, coll, reg, proj = found
        if reg is not None:
            role = registry_role(repo, actor, reg)
            if role is None:
                raise VersionNotFound(f"artifact version {membership_id} not found")
            return _Ctx(m, coll, reg, role, None)
        if proj is None or not can_use_entity(actor, proj.entity):
            raise VersionNotFound(f"artifact version {membership_id} not found")
        return _Ctx(m, coll, None, None, proj)

    def _require(self, actor: Actor, ctx: _Ctx, permission: Permission) -> None:
        if ctx.registry is not None:
            assert ctx.role is not None
            check(ctx.role, permission, ctx.registry)
        else:
            assert ctx.project is not None
            require_entity(actor, ctx.project.entity, ctx.project.name, "change artifacts")

    def _check_protected(
        self,
        repo: Repo,
        role: RegistryRole | None,
        registry_id: int | None,
        aliases: Sequence[str],
    ) -> None:
        """R7: only admins may add, move or remove a protected alias. Checked before
        the ordinary permission, so a refusal names the role really needed: admin."""
        if registry_id is None or role is None or role.rank >= RegistryRole.ADMIN.rank:
            return
        protected = repo.protected_keys([registry_id])[registry_id]
        if any(name_key(a) in protected for a in aliases):
            check(role, Permission.PROTECTED_ALIAS_EDIT, repo.get(Registry, registry_id))

    def _move_latest(
        self, repo: Repo, actor: Actor, coll: Collection, top: Membership | None = None
    ) -> None:
        """R4: ``latest`` sits on the highest-numbered membership, always. ``top`` is
        that membership when the caller knows it (a new link is always the highest)."""
        top = top or repo.highest_membership(coll.id)
        if top is None:
            current = repo.alias(coll.id, LATEST)
            if current is not None:
                repo.remove_alias(current.id)
            return
        previous = repo.set_alias(coll.id, top.id, LATEST, self.now())
        if previous is None or previous[0] != top.id:
            self._record(
                repo,
                actor,
                "alias_add",
                coll,
                version_index=top.version_index,
                version_id=top.version_id,
                alias=LATEST,
            )

    def _set_aliases(
        self, repo: Repo, actor: Actor, coll: Collection, m: Membership, aliases: Sequence[str]
    ) -> None:
        now = self.now()
        for alias in aliases:
            previous = repo.set_alias(coll.id, m.id, alias, now)
            if previous is not None and previous[0] == m.id:
                continue
            details = {} if previous is None else {"from_index": previous[1]}
            self._record(
                repo,
                actor,
                "alias_add",
                coll,
                version_index=m.version_index,
                version_id=m.version_id,
                alias=alias,
                **details,
            )

    def _remove_membership(
        self, repo: Repo, actor: Actor, coll: Collection, m: Membership, action: str
    ) -> None:
        names = repo.aliases_of([m.id])[m.id]
        repo.delete_membership(m.id, coll.id)
        for name in names:
            self._record(
                repo,
                actor,
                "alias_remove",
                coll,
                version_index=m.version_index,
                version_id=m.version_id,
                alias=name,
                reason=action,
            )
        self._record(
            repo, actor, action, coll, version_index=m.version_index, version_id=m.version_id
        )
        if any(name_key(n) == LATEST for n in names):
            self._move_latest(repo, actor, coll)
        repo.touch_collection(coll.id, self.now())

    # -- log ---------------------------------------------------------------------------
    def log_version(
        self,
        actor: Actor,
        *,
        entity: str,
        project: str,
        name: str,
        type: str,
        files: Sequence[FileEntry],
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> VersionView:
        """Record a new version of ``entity/project/name`` from stored blobs.

        Every file's content must be one the caller may reference (SPEC §7: they
        sent it, or may download a version holding it; see :meth:`verified_files`),
        and its size and check are confirmed against the store, in the same
        transaction as the write.
        R10: identical files return the existing version (``created`` is False).

        Raises:
            InvalidName, InvalidRequest: a bad name, path, size or check.
            ContentNotUploaded: a content the caller did not send and may not download.
            PermissionDenied: the caller may not log into ``entity/project``.
            TypeMismatch: the artifact exists with another type.
            StorageUnavailable: the blob store cannot be reached.
        """
        validate_entity_name(entity, "entity name")
        validate_entity_name(project, "project name")
        validate_artifact_name(name)
        validate_artifact_name(type, "artifact type")
        aliases = _dedupe([validate_alias(a) for a in aliases])
        tags = list(dict.fromkeys(validate_tag(t) for t in tags))
        validate_manifest_paths(f.path for f in files)
        for f in files:
            validate_digest(f.digest)
            if f.check is not None:
                validate_check(f.check)
        validate_metadata(metadata)
        validate_text(description, "the description")
        if run_key is not None:
            validate_label(run_key, "run key", MAX_RUN_KEY)
        require_entity(actor, entity, project, "log artifacts")
        digest = manifest_digest(files)  # sizes as given: confirmed equal to the store's below

        def fn(repo: Repo) -> VersionView:
            now = self.now()
            # First lock the contents' claims: a garbage collection freeing one of
            # them has finished (its rows are gone, so is its object) or waits for
            # this commit, and then sees the version's files (service/gc.py).
            repo.claim_blobs([f.digest for f in files], now)
            checked = self._confirmed_files(repo, actor, files)  # SPEC §7, sizes, checks
            proj = repo.ensure_project(actor.org_id, entity, project, now)
            seq = repo.ensure_collection(
                {
                    "org_id": actor.org_id,
                    "kind": "sequence",
                    "project_id": proj.id,
                    "name": name,
                    "name_key": name_key(name),
                    "type": type,
                    "description": "",
                    "next_index": 0,
                    "created_by": actor.user_id,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            if seq.type != type:
                raise TypeMismatch(
                    f"artifact {entity}/{project}/{name} has type {seq.type!r}; "
                    f"cannot log a version of type {type!r}",
                    existing_type=seq.type,
                    type=type,
                )
            existing = repo.version_by_digest(seq.id, digest)
            if existing is not None:
                m = repo.membership_of_version(seq.id, existing.id)
                assert m is not None
                self._set_aliases(repo, actor, seq, m, aliases)
                repo.add_version_tags(existing.id, tags)
                return self._version_view(repo, m, created=False)
            run = repo.run_by_key(actor.org_id, run_key) if run_key else None
            index = repo.allocate_index(seq.id, now)
            version = repo.add(
                Version(
                    sequence_id=seq.id,
                    version_index=index,
                    digest=digest,
                    size=sum(f.size for f in files),
                    file_count=len(files),
                    description=description or "",
                    metadata_=dict(metadata or {}),
                    run_id=run.id if run else None,
                    created_by=actor.user_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            repo.add_files(version.id, [(f.path, f.digest, f.size, f.check) for f in checked])
            repo.add_blobs(actor.org_id, {f.digest: f.size for f in files}, now)
            # Checked in the store (never trusted from the rows) under the claims'
            # locks, so garbage collection cannot free a file between this check and
            # the commit: a content it freed is sent again.
            for f in files:
                if not self.blobs.has(f.digest):
                    raise not_uploaded(f.digest, f.path)
            m = repo.add_membership(seq.id, version.id, index, actor.user_id, now)
            self._record(repo, actor, "log", seq, version_index=index, version_id=version.id)
            self._move_latest(repo, actor, seq, m)
            self._set_aliases(repo, actor, seq, m, aliases)
            repo.add_version_tags(version.id, tags)
            return self._version_view(repo, m)

        try:
            return self.db.write(self._once(actor, idempotency_key, "log", fn))
        except ChecksUnknown as unknown:  # contents stored before checks were recorded
            self.measure(unknown.digests)
            return self.db.write(self._once(actor, idempotency_key, "log", fn))

    # -- link ----------------------------------------------------------------------------
    def link(
        self,
        actor: Actor,
        membership_id: int,
        target: str,
        aliases: Sequence[str] = (),
        *,
        idempotency_key: str | None = None,
    ) -> VersionView:
        """R1-R5: link the version behind ``membership_id`` into ``target``
        (``wandb-registry-R/collection``), creating the collection if missing."""
        path = parse_target(target)
        aliases = _dedupe([validate_alias(a) for a in aliases])

        def fn(repo: Repo) -> VersionView:
            now = self.now()
            src = self._ctx(repo, actor, membership_id)
            reg, role = visible_registry(repo, actor, path.registry)
            self._check_protected(repo, role, reg.id, aliases)
            check(role, Permission.VERSION_LINK, reg)
            if src.registry is not None:
                assert src.role is not None
                check(src.role, Permission.FILES_DOWNLOAD, src.registry)
            version, seq = repo.version_source(src.membership.version_id)
            if reg.artifact_types and seq.type not in reg.artifact_types:
                raise TypeMismatch(
                    f"registry {reg.name!r} accepts artifact types {reg.artifact_types}; "
                    f"{seq.name!r} has type {seq.type!r}",
                    accepted=reg.artifact_types,
                    type=seq.type,
                )
            coll = repo.find_collection(registry_id=reg.id, name=path.collection, lock=True)
            if coll is None:
                coll = repo.ensure_collection(
                    {
                        "org_id": actor.org_id,
                        "kind": "portfolio",
                        "registry_id": reg.id,
                        "name": path.collection,
                        "name_key": name_key(path.collection),
                        "type": seq.type,
                        "description": "",
                        "next_index": 0,
                        "created_by": actor.user_id,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            if coll.type != seq.type:
                raise TypeMismatch(
                    f"collection {path.collection!r} holds artifacts of type {coll.type!r}; "
                    f"cannot link {seq.name!r} of type {seq.type!r}",
                    collection_type=coll.type,
                    type=seq.type,
                )
            m = repo.membership_of_version(coll.id, version.id)
            created = m is None
            if m is None:
                index = repo.allocate_index(coll.id, now)
                m = repo.add_membership(coll.id, version.id, index, actor.user_id, now)
                self._record(
                    repo,
                    actor,
                    "link",
                    coll,
                    version_index=index,
                    version_id=version.id,
                    source=f"{seq.name}:v{version.version_index}",
                )
                self._move_latest(repo, actor, coll, m)
            self._set_aliases(repo, actor, coll, m, aliases)
            return self._version_view(repo, m, created=created)

        return self.db.write(self._once(actor, idempotency_key, "link", fn))

    # -- aliases -------------------------------------------------------------------------------
    def add_aliases(
        self,
        actor: Actor,
        membership_id: int,
        aliases: Sequence[str],
        *,
        idempotency_key: str | None = None,
    ) -> VersionView:
        """R5: add aliases to a version, moving them from other versions in one transaction."""
        return self.change_aliases(
            actor, membership_id, add=aliases, idempotency_key=idempotency_key
        )

    def remove_aliases(
        self,
        actor: Actor,
        membership_id: int,
        aliases: Sequence[str],
        *,
        idempotency_key: str | None = None,
    ) -> VersionView:
        """Remove aliases from a version; AliasNotFound if the version does not hold one."""
        return self.change_aliases(
            actor, membership_id, remove=aliases, idempotency_key=idempotency_key
        )

    def set_aliases(
        self,
        actor: Actor,
        membership_id: int,
        aliases: Sequence[str],
        *,
        idempotency_key: str | None = None,
    ) -> VersionView:
        """Make the version's custom aliases exactly ``aliases`` (``latest`` is managed)."""
        return self.change_aliases(
            actor, membership_id, exactly=aliases, idempotency_key=idempotency_key
        )

    def change_aliases(
        self,
        actor: Actor,
        membership_id: int,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        exactly: Sequence[str] | None = None,
        idempotency_key: str | None = None,
    ) -> VersionView:
        """Remove, then add aliases of a version in one transaction; with ``exactly``,
        make its custom aliases exactly those. R5 moves, R7 protection, R11 history."""
        add = _dedupe([validate_alias(a) for a in add])
        remove = _dedupe([removable_alias(a) for a in remove])
        wanted = (
            None
            if exactly is None
            else _dedupe([a for a in map(validate_alias_or_latest, exactly) if a is not None])
        )

        def fn(repo: Repo) -> VersionView:
            ctx = self._ctx(repo, actor, membership_id)
            m = ctx.membership
            adding, removing = list(add), list(remove)
            if wanted is not None:
                current = [a for a in repo.aliases_of([m.id])[m.id] if name_key(a) != LATEST]
                keys = {name_key(a) for a in wanted}
                have = {name_key(a) for a in current}
                removing += [a for a in current if name_key(a) not in keys]
                adding += [a for a in wanted if name_key(a) not in have]
            if not adding and not removing:
                return self._version_view(repo, m)
            self._check_protected(repo, ctx.role, ctx.collection.registry_id, adding + removing)
            self._require(actor, ctx, Permission.ALIAS_EDIT)
            coll = repo.lock_collection(ctx.collection.id)
            for alias in removing:
                row = repo.alias(coll.id, alias)
                if row is None or row.membership_id != m.id:
                    raise AliasNotFound(
                        f"version v{m.version_index} of {coll.name!r} has no alias {alias!r}",
                        alias=alias,
                    )
                repo.remove_alias(row.id)
                self._record(
                    repo,
                    actor,
                    "alias_remove",
                    coll,
                    version_index=m.version_index,
                    version_id=m.version_id,
                    alias=row.name,
                )
            self._set_aliases(repo, actor, coll, m, adding)
            return self._version_view(repo, m)

        return self.db.write(self._once(actor, idempotency_key, "aliases", fn))

    # -- tags, description, metadata (R8: they belong to the version) ----------------------------
    def update_version(
        self,
        actor: Actor,
        membership_id: int,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> VersionView:
        add = list(dict.fromkeys(validate_tag(t) for t in add_tags))
        remove = list(dict.fromkeys(removable(validate_tag, t) for t in remove_tags))
        validate_metadata(metadata)
        validate_text(description, "the description")

        def fn(repo: Repo) -> VersionView:
            ctx = self._ctx(repo, actor, membership_id)
            self._require(actor, ctx, Permission.COLLECTION_EDIT)
            version = repo.get(Version, ctx.membership.version_id)
            m, coll = ctx.membership, ctx.collection
            changed = False
            if description is not None and description != version.description:
                version.description = description
                changed = True
            if metadata is not None and metadata != version.metadata_:
                version.metadata_ = dict(metadata)
                changed = True
            for tag in repo.add_version_tags(version.id, add):
                self._record(
                    repo,
                    actor,
                    "tag_add",
                    coll,
                    version_index=m.version_index,
                    version_id=version.id,
                    tag=tag,
                )
            for tag in repo.remove_version_tags(version.id, remove):
                self._record(
                    repo,
                    actor,
                    "tag_remove",
                    coll,
                    version_index=m.version_index,
                    version_id=version.id,
                    tag=tag,
                )
            if changed:
                version.updated_at = self.now()
                self._record(
                    repo,
                    actor,
                    "version_update",
                    coll,
                    version_index=m.version_index,
                    version_id=version.id,
                )
            return self._version_view(repo, m)

        return self.db.write(fn)

    # -- unlink and delete -----------------------------------------------------------
    def unlink(
        self, actor: Actor, membership_id: int, *, idempotency_key: str | None = None
    ) -> None:
        """R9: remove a version from a registry collection; the source version stays."""

        def fn(repo: Repo) -> None:
            ctx = self._ctx(repo, actor, membership_id)
            if ctx.registry is None:
                raise InvalidRequest(
                    "this is a source artifact version, not a link; use delete() to delete it"
                )
            coll = repo.lock_collection(ctx.collection.id)
            held = repo.aliases_of([ctx.membership.id])[ctx.membership.id]
            self._check_protected(repo, ctx.role, coll.registry_id, held)
            self._require(actor, ctx, Permission.VERSION_UNLINK)
            self._remove_membership(repo, actor, coll, ctx.membership, "unlink")

        self.db.write(self._once(actor, idempotency_key, "unlink", fn))

    def delete_version(self, actor: Actor, membership_id: int) -> None:
        """R9: delete a source version, unlinking it everywhere; its files are freed
        once no version references them, by garbage collection after its grace
        period (:mod:`regalia.service.gc`). R7: refused while a link holds a
        protected alias."""

        def fn(repo: Repo) -> None:
            ctx = self._ctx(repo, actor, membership_id)
            version = repo.get(Version, ctx.membership.version_id)
            seq = repo.get(Collection, version.sequence_id)
            proj = repo.get(Project, seq.project_id)
            require_entity(actor, proj.entity, proj.name, "delete artifact versions")
            held = repo.protected_aliases_on_links(version.id)
            if held:
                what = f"{seq.name}:v{version.version_index}"
                self._refuse_protected_delete(repo, actor, what, held)
            for m in repo.memberships_of_version(version.id):
                coll = repo.lock_collection(m.collection_id)
                if coll.registry_id is not None:
                    self._require_unlink_rights(repo, actor, coll.registry_id)
                action = "unlink" if coll.kind == "portfolio" else "delete_version"
                self._remove_membership(repo, actor, coll, m, action)
            repo.delete_version(version.id)

        self.db.write(fn)

    def _refuse_protected_delete(
        self, repo: Repo, actor: Actor, what: str, held: Sequence[tuple[Registry, str]]
    ) -> NoReturn:
        """R7: refuse to delete a version whose links hold protected aliases, naming
        only the registries (and their aliases) the caller may see."""
        roles = effective_roles(repo, actor, list({r.id: r for r, _ in held}.values()))
        shown = [(r.name, a) for r, a in held if roles[r.id] is not None]
        hidden = len({r.id for r, _ in held if roles[r.id] is None})
        parts = [f"{a!r} in registry {r!r}" for r, a in shown]
        if hidden:
            where = "a registry" if hidden == 1 else f"{hidden} registries"
            parts.append(f"{'more ' if shown else ''}in {where} you cannot see")
        raise ProtectedAlias(
            f"cannot delete {what}: links of it hold protected aliases ({'; '.join(parts)}); "
            "an admin of each registry must remove them first",
            aliases=[a for _, a in shown],
            registries=sorted({r for r, _ in shown}),
            hidden_registries=hidden,
        )

    def _require_unlink_rights(self, repo: Repo, actor: Actor, registry_id: int) -> None:
        """Deleting a source version unlinks it: that needs unlink rights where it is linked."""
        reg = repo.get(Registry, registry_id)
        role = registry_role(repo, actor, reg)
        if role is None:
            raise PermissionDenied(
                "cannot delete this version: it is linked in a registry you cannot see; "
                "ask that registry's admins to unlink it",
                required_role=RegistryRole.MEMBER.value,
            )
        check(role, Permission.VERSION_UNLINK, reg)
