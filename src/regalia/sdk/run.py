"""``init()`` and ``Run``: where source artifacts are logged and used (W&B's names)."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from regalia.core.names import validate_entity_name
from regalia.errors import TypeMismatch
from regalia.sdk.artifact import Artifact
from regalia.sdk.backend import connect

if TYPE_CHECKING:
    from regalia.sdk.backend import Backend


DEFAULT_PROJECT = "uncategorized"
_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits


def _run_id() -> str:
    return "".join(secrets.choice(_RUN_ID_ALPHABET) for _ in range(12))


class Run:
    """One execution: the lineage record of what it logged and used."""

    def __init__(
        self,
        backend: Backend,
        entity: str,
        project: str,
        *,
        job_type: str | None = None,
        name: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self._backend = backend
        self.entity = entity
        self.project = project
        self.job_type = job_type
        self.id = _run_id()
        self.name = name or self.id
        self.config: dict[str, Any] = dict(config or {})
        self.summary: dict[str, Any] = {}
        self._finished = False
        backend.start_run(entity, project, self.id, job_type)

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}/{self.id}"

    def log(
        self, data: dict[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        """Keep the latest value of each metric in ``summary`` (metrics are not stored)."""
        self.summary.update(data)

    # -- artifacts --------------------------------------------------------------------------
    def log_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None = None,
        type: str | None = None,
        aliases: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Artifact:
        """Log a draft artifact (or a file or folder path) as a new version of
        ``entity/project/name``; identical content returns the existing version (R10)."""
        artifact = self._as_artifact(artifact_or_path, name, type)
        if artifact._view is not None:
            return artifact
        files = artifact._upload(self._backend)
        view = self._backend.log_version(
            entity=self.entity,
            project=self.project,
            name=artifact._name,
            type=artifact.type,
            files=files,
            description=artifact.description,
            metadata=artifact.metadata,
            aliases=[*artifact.aliases, *(aliases or [])],
            tags=[*artifact.tags, *(tags or [])],
            run_key=self.id,
        )
        artifact._backend = self._backend
        artifact._set_view(view)
        return artifact

    def _as_artifact(
        self,
        artifact_or_path: Artifact | str | os.PathLike[str],
        name: str | None,
        type: str | None,
    ) -> Artifact:
        if isinstance(artifact_or_path, Artifact):
            return artifact_or_path
        path = Path(artifact_or_path)
        artifact = Artifact(name or path.name.replace(" ", "_"), type or "unspecified")
        if path.is_dir():
            artifact.add_dir(path)
        else:
            artifact.add_file(path)
        return artifact

    def link_artifact(
        self, artifact: Artifact, target_path: str, aliases: list[str] | None = None
    ) -> Artifact:
        """Link ``artifact`` (logged first if it is a draft) into a registry collection
        ``wandb-registry-{registry}/{collection}`` with the given aliases (R1-R5)."""
        if artifact._view is None:
            self.log_artifact(artifact)
        return artifact.link(target_path, aliases)

    def use_artifact(
        self,
        artifact_or_name: Artifact | str,
        type: str | None = None,
        aliases: list[str] | None = None,
        **_: Any,
    ) -> Artifact:
        """Declare that this run uses a version (lineage) and return it.

        ``artifact_or_name`` is a registry path, ``entity/project/name[:ref]``, or
        ``name[:ref]`` in this run's project.
        """
        if isinstance(artifact_or_name, Artifact):
            if artifact_or_name._view is None:
                self.log_artifact(artifact_or_name)
            view = artifact_or_name._logged()[1]
        else:
            view = self._backend.resolve(self._full_path(artifact_or_name))
        if type is not None and view.type != type:
            raise TypeMismatch(
                f"artifact {view.qualified_name} has type {view.type!r}, not {type!r}",
                type=view.type,
            )
        view = self._backend.use(view.membership_id, self.id)
        return Artifact._from_view(self._backend, view)

    def _full_path(self, name: str) -> str:
        if "/" in name.split(":", 1)[0]:
            return name
        return f"{self.entity}/{self.project}/{name}"

    # -- lifecycle -------------------------------------------------------------------------
    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        self._finished = True

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(exit_code=1 if exc else 0)

    def __repr__(self) -> str:
        return f"<Run {self.path}>"


def init(
    entity: str | None = None,
    project: str | None = None,
    job_type: str | None = None,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    *,
    api_key: str | None = None,
    **_: Any,
) -> Run:
    """Start a run in ``entity/project``. No server and no login are needed: on the
    embedded default the local owner (an org admin) acts unless ``REGALIA_API_KEY``
    (or ``api_key``) names another user.

    >>> run = init(entity="my-team", project="zoo")  # doctest: +SKIP
    """
    backend = connect(api_key=api_key)
    entity = entity or os.environ.get("REGALIA_ENTITY") or backend.actor.name
    project = project or os.environ.get("REGALIA_PROJECT") or DEFAULT_PROJECT
    validate_entity_name(entity, "entity name")
    validate_entity_name(project, "project name")
    return Run(backend, entity, project, job_type=job_type, name=name, config=config)
