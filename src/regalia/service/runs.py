"""Runs started by the `wandb` client: the record ``wandb.init`` upserts, what
its file stream says, and the files it uploads (issue 14).

A W&B run is Regalia's :class:`~regalia.store.models.Run` (the lineage record
of ``init()``), keyed by the client's run id in ``entity/project``: the same
row Regalia's own SDK makes, so the versions a run logs or uses point at it.
Regalia keeps what a user would look for afterwards, each bounded: the
display name, notes, config and summary (JSON objects), the state
(``running``, then ``finished`` or ``crashed`` with the exit code), the last
:data:`OUTPUT_TAIL_BYTES` of console output, line counts, the last heartbeat,
and the run's files (name, size, SHA-256; the bytes in the blob store). It
does not keep metric history (no experiment tracking): only its line count.

Every request is checked whole before anything is written, and written in
one transaction: a refused request leaves the run as it was.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from regalia.blobs.base import StoredBlob
from regalia.core.names import (
    MAX_NAME,
    MAX_PATH,
    MAX_RUN_KEY,
    validate_entity_name,
    validate_label,
)
from regalia.errors import InvalidName, InvalidRequest, NotFound, TooLarge
from regalia.service.access import require_entity
from regalia.service.transfer import TransferMixin
from regalia.service.views import Actor
from regalia.store.models import Project, Run, RunFile, RunInput, User, Version
from regalia.store.repo import Repo

# A run's config and summary, as JSON: the client's own bound on one line of
# its file stream (10 MiB less 100 KiB), so that what it sends is kept.
MAX_CONFIG_BYTES = 10 * 1024 * 1024
MAX_SUMMARY_BYTES = 10 * 1024 * 1024
MAX_DISPLAY_NAME = 256
MAX_GROUP = 128
MAX_RUN_TAG = 64  # W&B's bound on a run tag
MAX_RUN_TAGS = 100
MAX_NOTES = 64 * 1024
MAX_RUN_VERSIONS = 1000  # versions listed as one run's inputs or outputs
OUTPUT_TAIL_BYTES = 64 * 1024  # console output kept: the last lines up to this size
MAX_LINE_NUMBER = 2**31 - 1  # line offsets and counts are 32-bit columns on PostgreSQL

SUMMARY_FILE = "wandb-summary.json"
OUTPUT_FILE = "output.log"
HISTORY_FILE = "wandb-history.jsonl"
EVENTS_FILE = "wandb-events.jsonl"


class RunNotFound(NotFound):
    code = "run_not_found"


@dataclass(frozen=True)
class RunFileView:
    name: str
    size: int
    digest: str  # SHA-256 of the bytes the client PUT
    updated_at: datetime


@dataclass(frozen=True)
class RunView:
    """One run as Regalia keeps it."""

    id: int
    entity: str
    project: str
    run_key: str
    job_type: str | None
    created_at: datetime
    project_id: int = 0
    user_id: int = 0  # who started it
    user_name: str | None = None
    display_name: str | None = None
    notes: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    state: str | None = None  # None: a run of Regalia's own SDK
    exit_code: int | None = None
    output_tail: str = ""
    output_lines: int = 0
    history_lines: int = 0
    events_lines: int = 0
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    files: list[RunFileView] = field(default_factory=list)


@dataclass
class StreamUpdate:
    """One file_stream request, checked: what it changes in the run."""

    summary: str | None = None  # the summary's JSON, replacing the kept one
    output: tuple[int, list[str]] | None = None  # (first line number, lines)
    history_end: int | None = None
    events_end: int | None = None
    exit_code: int | None = None  # set with complete


def _where(entity: str, project: str, run_key: str) -> None:
    validate_entity_name(entity, "entity name")
    validate_entity_name(project, "project name")
    validate_label(run_key, "run id", MAX_RUN_KEY)


def _json_object(text: str | None, what: str, limit: int) -> str | None:
    """``text`` if it is a JSON object of at most ``limit`` bytes (NaN and the
    infinities, which the client may send, become null)."""
    if text is None:
        return None
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise TooLarge(f"a run's {what} has at most {limit} bytes of JSON", limit=limit)
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidRequest(f"the run's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"a run's {what} is a JSON object")
    return json.dumps(_finite(value), separators=(",", ":"))


def storable(text: str) -> str:
    """``text`` as every database keeps it: NUL and lone surrogates (which JSON
    may carry, and PostgreSQL refuses) become U+FFFD."""
    if not text.isascii():
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text.replace("\x00", "\ufffd")


def _finite(value: Any) -> Any:
    """A JSON value with what JSON text cannot carry everywhere replaced."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _optional(value: str | None, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if len(value) > limit:
        raise InvalidRequest(f"a run's {what} has at most {limit} characters")
    return storable(value)


def _tags(tags: Sequence[str]) -> list[str]:
    """A run's tags: at most :data:`MAX_RUN_TAGS`, each 1 to :data:`MAX_RUN_TAG`
    characters, duplicates dropped (order kept)."""
    if len(tags) > MAX_RUN_TAGS:
        raise InvalidRequest(f"a run has at most {MAX_RUN_TAGS} tags")
    for tag in tags:
        validate_label(tag, "run tag", MAX_RUN_TAG)
    return list(dict.fromkeys(tags))


def _chunk(files: dict[str, Any], name: str) -> tuple[int, list[str]] | None:
    """``files[name]`` of a file_stream request: ``{"offset": N, "content": [lines]}``."""
    chunk = files.get(name)
    if chunk is None:
        return None
    if not isinstance(chunk, dict):
        raise InvalidRequest(f"file_stream: files[{name!r}] is an object")
    offset = chunk.get("offset", 0)
    content = chunk.get("content", [])
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidRequest(f"file_stream: files[{name!r}].offset is a line number (0 or more)")
    if not isinstance(content, list) or not all(isinstance(c, str) for c in content):
        raise InvalidRequest(f"file_stream: files[{name!r}].content is a list of strings")
    if offset + len(content) > MAX_LINE_NUMBER:
        raise InvalidRequest(f"file_stream: files[{name!r}] goes past line {MAX_LINE_NUMBER}")
    return offset, content


def parse_stream(body: dict[str, Any]) -> StreamUpdate:
    """Check a file_stream request whole (see the client's FileStreamRequestJSON)."""
    update = StreamUpdate()
    files = body.get("files") or {}
    if not isinstance(files, dict):
        raise InvalidRequest("file_stream: 'files' is an object of file name to lines")
    summary = _chunk(files, SUMMARY_FILE)
    if summary is not None and summary[1]:
        update.summary = _json_object(summary[1][-1], "summary", MAX_SUMMARY_BYTES)
    update.output = _chunk(files, OUTPUT_FILE)
    for name, attr in ((HISTORY_FILE, "history_end"), (EVENTS_FILE, "events_end")):
        chunk = _chunk(files, name)
        if chunk is not None:
            setattr(update, attr, chunk[0] + len(chunk[1]))
    uploaded = body.get("uploaded")
    if uploaded is not None and (
        not isinstance(uploaded, list) or not all(isinstance(u, str) for u in uploaded)
    ):
        raise InvalidRequest("file_stream: 'uploaded' is a list of file names")
    complete = body.get("complete")
    if complete is not None and not isinstance(complete, bool):
        raise InvalidRequest("file_stream: 'complete' is true or false")
    if complete:
        code = body.get("exitcode", 0)
        if not isinstance(code, int) or isinstance(code, bool) or not -(2**31) <= code < 2**31:
            raise InvalidRequest("file_stream: 'exitcode' is the run's exit code (an integer)")
        update.exit_code = code
    return update


def merge_output(tail: str, line_count: int, offset: int, lines: Sequence[str]) -> tuple[str, int]:
    """The kept console tail and line count after lines ``offset…`` are written.

    The tail holds lines ``line_count - k … line_count - 1``, each ending in
    ``\\n``; a write at an earlier offset replaces lines (a progress bar
    redraws its line), a write past the end appends. Only the last
    :data:`OUTPUT_TAIL_BYTES` are kept.
    """
    kept = tail.split("\n")[:-1] if tail else []
    start = line_count - len(kept)
    lines = [storable(line).replace("\n", " ") for line in lines]
    if offset < start:  # lines the tail no longer holds
        lines = lines[start - offset :]
        offset = start
    if offset - line_count > OUTPUT_TAIL_BYTES:  # a gap wider than the tail can hold
        kept, start = [], offset
    kept += [""] * max(0, offset - (start + len(kept)))
    at = offset - start
    kept[at : at + len(lines)] = lines
    count = max(line_count, offset + len(lines))
    size = 0
    first = len(kept)
    while first > 0 and size + len(kept[first - 1].encode()) + 1 <= OUTPUT_TAIL_BYTES:
        first -= 1
        size += len(kept[first].encode()) + 1
    text = "".join(line + "\n" for line in kept[first:])
    if first == len(kept) and kept:  # one line longer than the whole tail: its end
        text = kept[-1].encode()[-(OUTPUT_TAIL_BYTES - 1) :].decode(errors="ignore") + "\n"
    return text, count


def _loaded(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _view(repo: Repo, run: Run, proj: Project, files: Sequence[RunFile] = ()) -> RunView:
    user = repo.get(User, run.user_id)
    return RunView(
        id=run.id,
        project_id=proj.id,
        user_id=run.user_id,
        user_name=user.name if user is not None else None,
        entity=proj.entity,
        project=proj.name,
        run_key=run.run_key,
        job_type=run.job_type,
        created_at=run.created_at,
        display_name=run.display_name,
        notes=run.notes,
        group=run.group_name,
        tags=json.loads(run.tags) if run.tags else [],
        config=_loaded(run.config),
        summary=_loaded(run.summary),
        state=run.state,
        exit_code=run.exit_code,
        output_tail=run.output_tail or "",
        output_lines=run.output_lines or 0,
        history_lines=run.history_lines or 0,
        events_lines=run.events_lines or 0,
        heartbeat_at=run.heartbeat_at,
        finished_at=run.finished_at,
        files=[RunFileView(f.name, f.size, f.digest, f.updated_at) for f in files],
    )


class RunsMixin(TransferMixin):
    def upsert_wandb_run(
        self,
        actor: Actor,
        entity: str,
        project: str,
        run_key: str,
        *,
        display_name: str | None = None,
        notes: str | None = None,
        group: str | None = None,
        tags: Sequence[str] | None = None,
        job_type: str | None = None,
        config: str | None = None,
        summary: str | None = None,
    ) -> tuple[RunView, bool]:
        """Create or update the run ``run_key`` of ``entity/project`` (what is
        given replaces what was kept; ``config`` and ``summary`` are JSON
        objects); the answer says whether it was created.

        Raises:
            InvalidName, InvalidRequest: a name or value breaks its rule.
            TooLarge: the config or summary is past its limit.
            PermissionDenied: the caller may not log into ``entity``.
        """
        _where(entity, project, run_key)
        if job_type is not None:
            validate_label(job_type, "job type", MAX_NAME)
        display_name = _optional(display_name, "display name", MAX_DISPLAY_NAME)
        notes = _optional(notes, "notes", MAX_NOTES)
        group = _optional(group, "group", MAX_GROUP)
        tag_list = _tags(tags) if tags is not None else None
        config = _json_object(config, "config", MAX_CONFIG_BYTES)
        summary = _json_object(summary, "summary", MAX_SUMMARY_BYTES)
        require_entity(actor, entity, project, "log runs")

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
                        user_id=actor.user_id,
                        created_at=now,
                        state="running",
                        output_lines=0,
                        history_lines=0,
                        events_lines=0,
                    )
                )
            elif run.state is None:  # a run of Regalia's SDK, now also the client's
                run.state = "running"
            values = {
                "job_type": job_type,
                "display_name": display_name,
                "notes": notes,
                "group_name": group,
                "tags": json.dumps(tag_list) if tag_list is not None else None,
                "config": config,
                "summary": summary,
            }
            for name, value in values.items():
                if value is not None:
                    setattr(run, name, value)
            run.heartbeat_at = now
            repo.s.flush()
            return _view(repo, run, proj), inserted

        return self.db.write(fn)

    def wandb_run(
        self, actor: Actor, entity: str, project: str, run_key: str, *, files: bool = False
    ) -> RunView:
        """The run ``run_key`` of ``entity/project`` (with its files if asked).

        Raises:
            PermissionDenied: the caller may not use ``entity``.
            RunNotFound: no such run.
        """
        _where(entity, project, run_key)
        require_entity(actor, entity, project, "read runs")

        def fn(repo: Repo) -> RunView:
            run, proj = self._run_at(repo, actor, entity, project, run_key)
            return _view(repo, run, proj, self._run_files(repo, run.id) if files else ())

        return self.db.read(fn)

    def _run_at(
        self,
        repo: Repo,
        actor: Actor,
        entity: str,
        project: str,
        run_key: str,
        *,
        for_update: bool = False,
    ) -> tuple[Run, Project]:
        proj = repo.project(actor.org_id, entity, project)
        run = None
        if proj is not None:
            q = select(Run).where(Run.project_id == proj.id, Run.run_key == run_key)
            run = repo.s.scalar(q.with_for_update() if for_update else q)
        if proj is None or run is None:
            raise RunNotFound(
                f"run {entity}/{project}/{run_key} not found: wandb.init starts it",
                entity=entity,
                project=project,
                run=run_key,
            )
        return run, proj

    def _run_files(self, repo: Repo, run_id: int) -> list[RunFile]:
        return list(
            repo.s.scalars(select(RunFile).where(RunFile.run_id == run_id).order_by(RunFile.name))
        )

    def _run_by_id(self, repo: Repo, actor: Actor, run_id: int, doing: str) -> tuple[Run, Project]:
        run = repo.get(Run, run_id)
        proj = repo.get(Project, run.project_id) if run is not None else None
        if run is None or proj is None or proj.org_id != actor.org_id:
            raise RunNotFound(f"run {run_id} not found")
        require_entity(actor, proj.entity, proj.name, doing)
        return run, proj

    def wandb_run_key(self, actor: Actor, run_id: int) -> str:
        """The key of the run with id ``run_id`` (one the caller may use)."""
        return self.db.read(
            lambda repo: self._run_by_id(repo, actor, run_id, "log runs")[0].run_key
        )

    def validate_run_file_name(self, name: str) -> str:
        """A run file's name: a relative path inside the run's folder.

        Raises:
            InvalidName: rule ``path``.
        """
        if not isinstance(name, str) or not name or len(name) > MAX_PATH:
            raise InvalidName(f"a run file's name has 1 to {MAX_PATH} characters", rule="path")
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise InvalidName(
                f"run file name {name!r} must be a relative path without '.', '..' or '\\'",
                rule="path",
            )
        validate_label(name, "run file name", MAX_PATH)
        return name

    def wandb_file_stream(
        self, actor: Actor, entity: str, project: str, run_key: str, body: dict[str, Any]
    ) -> RunView:
        """Apply one file_stream request to the run: its summary, console
        output, line counts, heartbeat, and (``complete``) its end: ``finished``
        for exit code 0, else ``crashed``. A request after the end resumes it.

        Raises:
            InvalidRequest: the request is malformed (nothing is written).
            TooLarge: the summary is past its limit.
            PermissionDenied, RunNotFound: as :meth:`wandb_run`.
        """
        _where(entity, project, run_key)
        update = parse_stream(body)
        require_entity(actor, entity, project, "log runs")

        def fn(repo: Repo) -> RunView:
            now = self.now()
            run, proj = self._run_at(repo, actor, entity, project, run_key, for_update=True)
            if update.summary is not None:
                run.summary = update.summary
            if update.output is not None:
                offset, lines = update.output
                run.output_tail, run.output_lines = merge_output(
                    run.output_tail or "", run.output_lines or 0, offset, lines
                )
            if update.history_end is not None:
                run.history_lines = max(run.history_lines or 0, update.history_end)
            if update.events_end is not None:
                run.events_lines = max(run.events_lines or 0, update.events_end)
            run.heartbeat_at = now
            if update.exit_code is not None:
                run.state = "finished" if update.exit_code == 0 else "crashed"
                run.exit_code = update.exit_code
                run.finished_at = now
            elif run.state != "running":
                run.state, run.exit_code, run.finished_at = "running", None, None
            repo.s.flush()
            return _view(repo, run, proj)

        return self.db.write(fn)

    def run_version_ids(
        self, actor: Actor, entity: str, project: str, run_key: str, *, used: bool
    ) -> list[int]:
        """The ids of the versions the run logged (``used``: used), oldest
        first, at most :data:`MAX_RUN_VERSIONS`; whether the caller may see
        each is the caller's to check (``version_by_id``)."""
        _where(entity, project, run_key)
        require_entity(actor, entity, project, "read runs")

        def fn(repo: Repo) -> list[int]:
            run, _ = self._run_at(repo, actor, entity, project, run_key)
            q = (
                select(RunInput.version_id).where(RunInput.run_id == run.id)
                if used
                else select(Version.id).where(Version.run_id == run.id)
            )
            column = RunInput.version_id if used else Version.id
            return list(repo.s.scalars(q.order_by(column).limit(MAX_RUN_VERSIONS)))

        return self.db.read(fn)

    def run_file(self, actor: Actor, run_id: int, name: str) -> RunFileView:
        """The kept file ``name`` of the run with id ``run_id``, to download.

        Raises:
            PermissionDenied: the caller may no longer read the run's project.
            RunNotFound, NotFound: no such run, or no such file in it.
        """

        def fn(repo: Repo) -> RunFileView:
            self._run_by_id(repo, actor, run_id, "read runs")
            row = repo.s.scalar(
                select(RunFile).where(RunFile.run_id == run_id, RunFile.name == name)
            )
            if row is None:
                raise NotFound(f"the run has no file {name!r}", name=name)
            return RunFileView(row.name, row.size, row.digest, row.updated_at)

        return self.db.read(fn)

    def store_run_file(
        self, actor: Actor, run_id: int, name: str, path: Path, blob: StoredBlob
    ) -> RunFileView:
        """Keep a run file the client PUT: its bytes go to the blob store (once
        per content), its name, size and SHA-256 to the run (a name sent
        again is replaced)."""
        self.validate_run_file_name(name)
        self.db.read(lambda repo: self._run_by_id(repo, actor, run_id, "log runs"))
        stored = self.adopt_blob(actor, path, blob)

        def fn(repo: Repo) -> RunFileView:
            self._run_by_id(repo, actor, run_id, "log runs")
            now = self.now()
            row = repo.s.scalar(
                select(RunFile).where(RunFile.run_id == run_id, RunFile.name == name)
            )
            if row is None:
                row = repo.add(
                    RunFile(
                        run_id=run_id,
                        name=name,
                        size=stored.size,
                        digest=stored.digest,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                row.size, row.digest, row.updated_at = stored.size, stored.digest, now
            repo.s.flush()
            return RunFileView(row.name, row.size, row.digest, row.updated_at)

        return self.db.write(fn)
