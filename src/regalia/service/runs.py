"""Runs started by the `wandb` client: the record ``wandb.init`` upserts.

A W&B run is Regalia's :class:`~regalia.store.models.Run` (the lineage record
of ``init()``), keyed by the client's run id in ``entity/project``; the same
row Regalia's own SDK makes, so versions the run logs or uses point at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from regalia.blobs.base import StoredBlob
from regalia.core.names import (
    MAX_NAME,
    MAX_PATH,
    MAX_RUN_KEY,
    validate_entity_name,
    validate_label,
)
from regalia.errors import InvalidName, NotFound
from regalia.service.access import require_entity
from regalia.service.transfer import TransferMixin
from regalia.service.views import Actor
from regalia.store.models import Project, Run
from regalia.store.repo import Repo


class RunNotFound(NotFound):
    code = "run_not_found"


@dataclass(frozen=True)
class RunView:
    """One run as the `wandb` client sees it."""

    id: int
    entity: str
    project: str
    run_key: str
    job_type: str | None
    created_at: datetime


def _where(entity: str, project: str, run_key: str) -> None:
    validate_entity_name(entity, "entity name")
    validate_entity_name(project, "project name")
    validate_label(run_key, "run id", MAX_RUN_KEY)


class RunsMixin(TransferMixin):
    def upsert_wandb_run(
        self,
        actor: Actor,
        entity: str,
        project: str,
        run_key: str,
        *,
        job_type: str | None = None,
    ) -> tuple[RunView, bool]:
        """Create or update the run ``run_key`` of ``entity/project``; the
        answer says whether it was created.

        Raises:
            InvalidName: a name breaks its rule.
            PermissionDenied: the caller may not log into ``entity``.
        """
        _where(entity, project, run_key)
        if job_type is not None:
            validate_label(job_type, "job type", MAX_NAME)
        require_entity(actor, entity, project, "start runs")

        def fn(repo: Repo) -> tuple[RunView, bool]:
            now = self.now()
            proj = repo.ensure_project(actor.org_id, entity, project, now)
            run = repo.run_in_project(proj.id, run_key)
            inserted = run is None
            if run is None:
                run = repo.add(
                    Run(
                        project_id=proj.id,
                        run_key=run_key,
                        job_type=job_type,
                        user_id=actor.user_id,
                        created_at=now,
                    )
                )
            elif job_type is not None:
                run.job_type = job_type
            view = RunView(
                run.id, proj.entity, proj.name, run.run_key, run.job_type, run.created_at
            )
            return view, inserted

        return self.db.write(fn)

    def wandb_run(self, actor: Actor, entity: str, project: str, run_key: str) -> RunView:
        """The run ``run_key`` of ``entity/project``.

        Raises:
            PermissionDenied: the caller may not use ``entity``.
            RunNotFound: no such run.
        """
        _where(entity, project, run_key)
        require_entity(actor, entity, project, "read runs")

        def fn(repo: Repo) -> RunView:
            proj = repo.project(actor.org_id, entity, project)
            run = repo.run_in_project(proj.id, run_key) if proj is not None else None
            if proj is None or run is None:
                raise RunNotFound(f"run {entity}/{project}/{run_key} not found")
            return RunView(
                run.id, proj.entity, proj.name, run.run_key, run.job_type, run.created_at
            )

        return self.db.read(fn)

    def wandb_run_key(self, actor: Actor, run_id: int) -> str:
        """The key of the run with id ``run_id`` (one the caller may use)."""

        def fn(repo: Repo) -> str:
            run = repo.get(Run, run_id)
            proj = repo.get(Project, run.project_id) if run is not None else None
            if run is None or proj is None or proj.org_id != actor.org_id:
                raise RunNotFound(f"run {run_id} not found")
            require_entity(actor, proj.entity, proj.name, "update runs")
            return run.run_key

        return self.db.read(fn)

    def validate_run_file_name(self, name: str) -> str:
        """A run file's name: a relative path inside the run's folder."""
        if not isinstance(name, str) or not name or len(name) > MAX_PATH:
            raise InvalidName(f"a run file's name has 1 to {MAX_PATH} characters", rule="path")
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
            raise InvalidName(
                f"run file name {name!r} must be a relative path without '.', '..' or '\\\\'",
                rule="path",
            )
        validate_label(name, "run file name", MAX_PATH)
        return name

    def wandb_file_stream(
        self, actor: Actor, entity: str, project: str, run_key: str, body: dict[str, Any]
    ) -> None:
        """Apply one file_stream request to the run."""
        self.wandb_run(actor, entity, project, run_key)

    def store_run_file(
        self, actor: Actor, run_id: int, name: str, path: Path, blob: StoredBlob
    ) -> None:
        """Keep a run file the client PUT (its bytes go to the blob store)."""
        self.validate_run_file_name(name)
        self.wandb_run_key(actor, run_id)
        self.adopt_blob(actor, path, blob)
