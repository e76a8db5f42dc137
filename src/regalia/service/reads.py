"""Use cases that read versions: resolve a path, files for download, lineage, runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from regalia.core.names import (
    MAX_ID,
    MAX_NAME,
    MAX_RUN_KEY,
    RegistryPath,
    SourcePath,
    parse_path,
    validate_entity_name,
    validate_label,
    version_index_from_ref,
)
from regalia.core.roles import Permission
from regalia.errors import (
    ArtifactNotFound,
    CollectionNotFound,
    InvalidRequest,
    PermissionDenied,
    RegistryNotFound,
    VersionNotFound,
)
from regalia.service.access import (
    can_use_entity,
    check,
    registry_role,
    require_entity,
)
from regalia.service.artifacts import ArtifactsMixin, _Ctx
from regalia.service.views import Actor, CollectionView, FileEntry, VersionView
from regalia.store.models import Collection, Project, Registry, Run, RunInput, Version
from regalia.store.repo import Repo


class ReadsMixin(ArtifactsMixin):
    # -- resolve, read, download -------------------------------------------------------------
    def resolve(self, actor: Actor, path: str) -> VersionView:
        """The version a registry or source path names (no ref: ``latest``)."""
        parsed = parse_path(path)

        def fn(repo: Repo) -> VersionView:
            return self._version_views_by_id(repo, [self._resolve(repo, actor, parsed)])[0]

        return self.db.read(fn)

    def _resolve(self, repo: Repo, actor: Actor, parsed: RegistryPath | SourcePath) -> int:
        """The id of the membership ``parsed`` names (404 if none the caller may see)."""
        index = version_index_from_ref(parsed.ref)
        ref: str | int = index if index is not None else parsed.ref
        if isinstance(parsed, RegistryPath):
            reg, cid, mid = repo.registry_path(
                actor.org_id, parsed.registry, parsed.collection, ref
            )
            if reg is None or registry_role(repo, actor, reg) is None:
                raise RegistryNotFound(
                    f"registry {parsed.registry!r} not found", registry=parsed.registry
                )
            if cid is None:
                raise CollectionNotFound(
                    f"collection {parsed.collection!r} not found in registry {reg.name!r}",
                    registry=reg.name,
                    collection=parsed.collection,
                )
            where = f"{parsed.collection!r} in registry {reg.name!r}"
        else:
            proj = repo.project(actor.org_id, parsed.entity, parsed.project)
            coll = repo.sequence(proj.id, parsed.name) if proj is not None else None
            if coll is None or not can_use_entity(actor, parsed.entity):
                raise ArtifactNotFound(
                    f"artifact {parsed.entity}/{parsed.project}/{parsed.name} not found"
                )
            m = (
                repo.membership_by_index(coll.id, ref)
                if isinstance(ref, int)
                else repo.membership_by_alias(coll.id, ref)
            )
            mid = None if m is None else m.id
            where = f"{parsed.entity}/{parsed.project}/{parsed.name}"
        if mid is None:
            raise VersionNotFound(f"no version {parsed.ref!r} in {where}", ref=parsed.ref)
        return mid

    def source_collection(
        self, actor: Actor, entity: str, project: str, name: str
    ) -> CollectionView:
        """The source artifact ``entity/project/name`` (404 when the caller may not see it)."""

        def fn(repo: Repo) -> CollectionView:
            proj = repo.project(actor.org_id, entity, project)
            coll = repo.sequence(proj.id, name) if proj is not None else None
            if coll is None or not can_use_entity(actor, entity):
                raise ArtifactNotFound(f"artifact {entity}/{project}/{name} not found")
            return self._collection_views(repo, [coll])[0]

        return self.db.read(fn)

    def get_version(self, actor: Actor, membership_id: int) -> VersionView:
        def fn(repo: Repo) -> VersionView:
            return self._version_view(repo, self._ctx(repo, actor, membership_id).membership)

        return self.db.read(fn)

    def source_of(self, actor: Actor, membership_id: int) -> VersionView:
        """The source version (as seen in its own artifact) behind a link."""

        def fn(repo: Repo) -> VersionView:
            ctx = self._ctx(repo, actor, membership_id)
            version = repo.get(Version, ctx.membership.version_id)
            m = repo.membership_of_version(version.sequence_id, version.id)
            assert m is not None
            return self._version_view(repo, m)

        return self.db.read(fn)

    def version_by_id(self, actor: Actor, version_id: int) -> VersionView:
        """A source version by its id, as seen in its own artifact (404 when
        there is none the caller may see)."""

        def fn(repo: Repo) -> VersionView:
            version = repo.get(Version, version_id) if 0 < version_id <= MAX_ID else None
            m = (
                None
                if version is None
                else repo.membership_of_version(version.sequence_id, version.id)
            )
            if m is None:
                raise VersionNotFound(f"no version with id {version_id}", ref=str(version_id))
            self._readable_membership(repo, actor, m.version_id)  # 404 unless the caller sees it
            return self._version_view(repo, m)

        return self.db.read(fn)

    def readable_membership(self, actor: Actor, version_id: int, *, download: bool = False) -> int:
        """The membership through which the caller reads a version (by its id):
        its own artifact's when the caller may see that, else a registry link
        the caller may download from, else one it may see. A registry member
        outside the source's team reads the version through its registry (SPEC §4).

        Raises:
            VersionNotFound: the caller sees the version nowhere.
            PermissionDenied: ``download`` and the caller may see but not download it.
        """
        return self.db.read(
            lambda repo: self._readable_membership(repo, actor, version_id, download)
        )

    def _readable_membership(
        self, repo: Repo, actor: Actor, version_id: int, download: bool = False
    ) -> int:
        refused: PermissionDenied | None = None
        seen: int | None = None
        for m in repo.memberships_of_version(version_id):
            try:
                ctx = self._ctx(repo, actor, m.id)
            except VersionNotFound:
                continue
            if ctx.registry is None:
                return m.id
            try:
                self._require_download(actor, ctx)
            except PermissionDenied as exc:
                refused, seen = refused or exc, m.id if seen is None else seen
                continue
            return m.id
        if seen is None:
            raise VersionNotFound(f"no version with id {version_id}", ref=str(version_id))
        if download and refused is not None:
            raise refused
        return seen

    def links_of(self, actor: Actor, membership_id: int) -> list[VersionView]:
        """Every registry link of the version the caller may see."""

        def fn(repo: Repo) -> list[VersionView]:
            ctx = self._ctx(repo, actor, membership_id)
            out = []
            for m in repo.memberships_of_version(ctx.membership.version_id):
                coll = repo.get(Collection, m.collection_id)
                if coll.kind != "portfolio":
                    continue
                reg = repo.get(Registry, coll.registry_id)
                if registry_role(repo, actor, reg) is not None:
                    out.append(m)
            return self._version_views(repo, out)

        return self.db.read(fn)

    def files(self, actor: Actor, membership_id: int) -> list[FileEntry]:
        """The manifest of a version, for download (viewer or more; SPEC §4)."""

        def fn(repo: Repo) -> list[FileEntry]:
            ctx = self._ctx(repo, actor, membership_id)
            self._require_download(actor, ctx)
            return [FileEntry(p, d, n, c) for p, d, n, c in repo.files(ctx.membership.version_id)]

        return self.db.read(fn)

    def _require_download(self, actor: Actor, ctx: _Ctx) -> None:
        if ctx.registry is not None:
            assert ctx.role is not None
            check(ctx.role, Permission.FILES_DOWNLOAD, ctx.registry)

    def use(self, actor: Actor, membership_id: int, run_key: str) -> VersionView:
        """Record that a run used a version (lineage); needs download rights."""

        def fn(repo: Repo) -> VersionView:
            ctx = self._ctx(repo, actor, membership_id)
            self._require_download(actor, ctx)
            run = repo.run_by_key(actor.org_id, run_key)
            if run is None:
                raise InvalidRequest(f"unknown run {run_key!r}")
            repo.add_run_input(run.id, ctx.membership.version_id)
            return self._version_view(repo, ctx.membership)

        return self.db.write(fn)

    def lineage(self, actor: Actor, membership_id: int) -> dict[str, Any]:
        """The run that logged the version and the runs that used it."""

        def fn(repo: Repo) -> dict[str, Any]:
            ctx = self._ctx(repo, actor, membership_id)
            version = repo.get(Version, ctx.membership.version_id)
            run = repo.get(Run, version.run_id) if version.run_id else None
            return {
                "logged_by": run.run_key if run else None,
                "source_run": None if run is None else _source_run(repo, run),
                "used_by": repo.runs_using(version.id),
            }

        return self.db.read(fn)

    def run_lineage(
        self, actor: Actor, membership_id: int
    ) -> tuple[tuple[int, str, str, str] | None, list[tuple[int, str, str, str]]]:
        """:meth:`lineage` with where each run is: ``(run id, entity, project,
        run key)`` of the run that logged the version, and of those that used it."""

        def ref(repo: Repo, run: Run) -> tuple[int, str, str, str]:
            proj = repo.get(Project, run.project_id)
            return run.id, proj.entity, proj.name, run.run_key

        def fn(repo: Repo) -> tuple[tuple[int, str, str, str] | None, list[Any]]:
            ctx = self._ctx(repo, actor, membership_id)
            version = repo.get(Version, ctx.membership.version_id)
            logged = repo.get(Run, version.run_id) if version.run_id else None
            used = repo.s.scalars(
                select(Run)
                .join(RunInput, RunInput.run_id == Run.id)
                .where(RunInput.version_id == version.id)
                .order_by(Run.id)
            ).all()
            return (ref(repo, logged) if logged else None), [ref(repo, r) for r in used]

        return self.db.read(fn)

    def start_run(
        self, actor: Actor, entity: str, project: str, run_key: str, job_type: str | None = None
    ) -> str:
        """Create a run in ``entity/project`` (the lineage record of ``init()``);
        starting a run that exists in that project already is not an error."""
        validate_entity_name(entity, "entity name")
        validate_entity_name(project, "project name")
        validate_label(run_key, "run key", MAX_RUN_KEY)
        if job_type is not None:
            validate_label(job_type, "job type", MAX_NAME)
        require_entity(actor, entity, project, "start runs")

        def fn(repo: Repo) -> str:
            now = self.now()
            proj = repo.ensure_project(actor.org_id, entity, project, now)
            if repo.run_in_project(proj.id, run_key) is not None:
                return run_key
            repo.add(
                Run(
                    project_id=proj.id,
                    run_key=run_key,
                    job_type=job_type,
                    user_id=actor.user_id,
                    created_at=now,
                )
            )
            return run_key

        return self.db.write(fn)


def _source_run(repo: Repo, run: Run) -> dict[str, Any]:
    """The run that logged a version, as its lineage shows it: where it ran and
    what the `wandb` client said of it (a run of Regalia's own SDK has no state)."""
    project = repo.get(Project, run.project_id)
    return {
        "run_key": run.run_key,
        "path": f"{project.entity}/{project.name}/{run.run_key}",
        "display_name": run.display_name,
        "job_type": run.job_type,
        "state": run.state,
        "exit_code": run.exit_code,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
    }
