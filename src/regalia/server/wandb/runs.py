"""Runs over the W&B protocol: what ``wandb.init`` … ``run.finish()`` sends.

* ``Mutation.upsertBucket`` creates or updates the run (Regalia's run record,
  the one its own SDK makes) and answers it as W&B's ``Run``;
* ``POST /files/{entity}/{project}/{run}/file_stream`` (API key as HTTP Basic,
  like ``/graphql``) carries the run's summary, console output and, at the
  end, ``{"complete": true, "exitcode": N}``; the client retries it for days
  on a 5xx, so every refusal here is a 4xx that says why;
* ``Mutation.createRunFiles`` hands out one self-authorizing URL per run file
  (``config.yaml``, ``wandb-summary.json``, ``output.log``, …), which the
  client PUTs to ``/wandb/run-files/<token>`` without credentials;
* ``Project.run(name){stopped}`` answers clients before 0.26, which poll it.
"""

from __future__ import annotations

import json
import mimetypes
import re
import uuid
import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from regalia.errors import InvalidRequest, NotFound, RegaliaError, TooLarge
from regalia.server.auth import Authenticator
from regalia.server.routes_blobs import blob_response
from regalia.server.uploads import receive_file
from regalia.server.wandb.ids import decode_int_id, encode_id
from regalia.server.wandb.objects import artifact_of, project_of, timestamp
from regalia.server.wandb.resolvers import context, field, mutation, query
from regalia.server.wandb.signing import DOWNLOAD_TTL_S, UPLOAD_TTL_S, signer_of
from regalia.service import Actor, Service
from regalia.service.runs import RunFileView, RunNotFound, RunView

router = APIRouter(include_in_schema=False)

RUN_FILE_PURPOSE = "wandb-run-file"  # PUT: upload one run file
RUN_FILE_GET = "wandb-run-file-get"  # GET: download one kept run file
DEFAULT_FILES_PAGE = 50
MAX_FILES_PAGE = 1000
MAX_PATTERN = 256
DEFAULT_PROJECT = "uncategorized"  # W&B's project for a run started without one
MAX_FILE_STREAM_BODY = 16 * 1024 * 1024  # the client sends at most ~10 MiB per request
MAX_RUN_FILE = 5 * 1024**3  # config.yaml, output.log, …, and what wandb.save() sends
MAX_RUN_FILES = 1000  # names in one createRunFiles


def run_of(view: RunView) -> dict[str, Any]:
    """A run as W&B's ``Run``."""
    return {
        "__typename": "Run",
        "id": encode_id("Run", view.id),
        "projectId": view.project_id,
        "name": view.run_key,
        "displayName": view.display_name or view.run_key,
        "description": view.notes,
        "notes": view.notes,
        "config": json.dumps(view.config),
        "summaryMetrics": json.dumps(view.summary),
        "sweepName": None,
        "tags": view.tags,
        "group": view.group,
        "commit": None,
        "readOnly": False,
        "systemMetrics": json.dumps({}),
        "historyKeys": None,
        # Metric history is not kept: a resumed run continues its steps from
        # the summary's _step, and its line offsets from the counts.
        "historyTail": "[]",
        "eventsTail": "[]",
        "wandbConfig": lambda info, keys=None, **_: json.dumps(wandb_config(view, keys)),
        "fileCount": lambda info, **_: len(_files_of(view, info)),
        "files": lambda info, **args: file_connection(view, info, **args),
        "outputArtifacts": lambda info, **args: artifact_connection(view, info, False, **args),
        "inputArtifacts": lambda info, **args: artifact_connection(view, info, True, **args),
        "user": {
            "id": encode_id("User", view.user_id),
            "name": view.user_name,
            "username": view.user_name,
        },
        "jobType": view.job_type,
        "state": view.state,
        "stopped": False,
        "historyLineCount": view.history_lines,
        "logLineCount": view.output_lines,
        "eventsLineCount": view.events_lines,
        "createdAt": timestamp(view.created_at),
        "heartbeatAt": timestamp(view.heartbeat_at),
        "project": project_of(view.entity, view.project),
    }


def _files_of(view: RunView, info: Any) -> list[RunFileView]:
    ctx = context(info)
    full = ctx.service.wandb_run(ctx.actor, view.entity, view.project, view.run_key, files=True)
    return full.files


def _like(pattern: str) -> re.Pattern[str]:
    """A SQL LIKE pattern (``%``, ``_``) as a regular expression."""
    parts = ("." if c == "_" else ".*" if c == "%" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def file_connection(
    view: RunView,
    info: Any,
    names: list[str] | None = None,
    after: str | None = None,
    first: int | None = None,
    pattern: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """A page of the run's files (by name), each with a signed download URL."""
    ctx = context(info)
    files = _files_of(view, info)
    if names:
        wanted = set(names)
        files = [f for f in files if f.name in wanted]
    if pattern:
        like = _like(pattern[:MAX_PATTERN])
        files = [f for f in files if like.fullmatch(f.name)]
    total = len(files)
    if after:
        files = [f for f in files if f.name > after]
    size = max(1, min(first or DEFAULT_FILES_PAGE, MAX_FILES_PAGE))
    page, more = files[:size], len(files) > size
    edges = []
    for f in page:
        claims = {"u": ctx.actor.user_id, "r": view.id, "n": f.name}
        url = ctx.url(f"/wandb/run-files/{ctx.signer.sign(RUN_FILE_GET, claims, DOWNLOAD_TTL_S)}")
        node = {
            "id": encode_id("File", f"{view.id}:{f.name}"),
            "name": f.name,
            "displayName": f.name.rsplit("/", 1)[-1],
            "sizeBytes": f.size,
            "digest": f.digest,
            "md5": None,
            "directUrl": url,
            "url": url,
            "storagePath": None,
            "mimetype": mimetypes.guess_type(f.name)[0] or "application/octet-stream",
            "updatedAt": timestamp(f.updated_at),
        }
        edges.append({"cursor": f.name, "node": node})
    return {
        "totalCount": total,
        "pageInfo": {
            "endCursor": page[-1].name if page else None,
            "hasNextPage": more,
            "startCursor": page[0].name if page else None,
            "hasPreviousPage": bool(after),
        },
        "edges": edges,
    }


def artifact_connection(
    view: RunView,
    info: Any,
    used: bool,
    after: str | None = None,
    first: int | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The versions the run logged (or used) that the caller may see, a page."""
    ctx = context(info)
    ids = ctx.service.run_version_ids(ctx.actor, view.entity, view.project, view.run_key, used=used)
    seen = []
    for version_id in ids:
        try:
            seen.append((version_id, ctx.service.version_by_id(ctx.actor, version_id)))
        except NotFound:  # deleted since, or not the caller's to see
            continue
    start = int(after) if after and after.isdigit() else 0
    rest = [(i, v) for i, v in seen if i > start]
    size = max(1, min(first or DEFAULT_FILES_PAGE, MAX_FILES_PAGE))
    page = rest[:size]
    return {
        "totalCount": len(seen),
        "pageInfo": {
            "endCursor": str(page[-1][0]) if page else None,
            "hasNextPage": len(rest) > size,
            "startCursor": str(page[0][0]) if page else None,
            "hasPreviousPage": start > 0,
        },
        "edges": [{"cursor": str(i), "node": artifact_of(ctx, v)} for i, v in page],
    }


def wandb_config(view: RunView, keys: list[str] | None) -> dict[str, Any]:
    """The client's own entries of the run's config (``_wandb``), those of
    ``keys`` (all if None); its ``t`` says the run started."""
    own = view.config.get("_wandb")
    value = own.get("value") if isinstance(own, dict) else None
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if keys is None or k in keys}


def _text(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} is a string")
    return value


@mutation("upsertBucket")
def upsert_bucket(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``wandb.init`` (and ``run.finish()``, ``run.config``…): create or update the run."""
    ctx = context(info)
    entity = _text(input.get("entityName"), "entityName") or ctx.actor.name
    project = _text(input.get("modelName"), "modelName") or DEFAULT_PROJECT
    run_key = _text(input.get("name"), "name")
    if run_key is None:
        storage_id = _text(input.get("id"), "id")
        if storage_id is not None:
            run_id = decode_int_id(storage_id, "Run")
            run_key = ctx.service.wandb_run_key(ctx.actor, run_id)
        else:
            run_key = uuid.uuid4().hex[:8]
    view, inserted = ctx.service.upsert_wandb_run(
        ctx.actor,
        entity,
        project,
        run_key,
        display_name=_text(input.get("displayName"), "displayName"),
        notes=_text(input.get("notes"), "notes") or _text(input.get("description"), "description"),
        group=_text(input.get("groupName"), "groupName"),
        tags=input.get("tags"),
        job_type=_text(input.get("jobType"), "jobType"),
        config=_text(input.get("config"), "config"),
        summary=_text(input.get("summaryMetrics"), "summaryMetrics"),
    )
    bucket = run_of(view)
    # No history lines in this answer: Regalia keeps none (only their count),
    # and a client before 0.26 that reads a count here drops the console and
    # events offsets a resumed run got from RunResumeStatus, and overwrites
    # the output it had sent before.
    bucket["historyLineCount"] = 0
    return {"bucket": bucket, "inserted": inserted}


@mutation("createRunFiles")
def create_run_files(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """Signed PUT URLs for the run's files (no credentials go with the PUT)."""
    ctx = context(info)
    names = input["files"]
    if len(names) > MAX_RUN_FILES:
        raise InvalidRequest(f"ask for at most {MAX_RUN_FILES} run files at once")
    view = ctx.service.wandb_run(
        ctx.actor, input["entityName"], input["projectName"], input["runName"]
    )
    for name in names:
        ctx.service.validate_run_file_name(name)
    files = []
    for name in names:
        claims = {"u": ctx.actor.user_id, "r": view.id, "n": name}
        token = ctx.signer.sign(RUN_FILE_PURPOSE, claims, UPLOAD_TTL_S)
        files.append({"name": name, "uploadUrl": ctx.url(f"/wandb/run-files/{token}")})
    return {"runID": encode_id("Run", view.id), "uploadHeaders": [], "files": files}


def _run_in(project: dict[str, Any], info: Any, name: str) -> dict[str, Any] | None:
    ctx = context(info)
    try:
        view = ctx.service.wandb_run(ctx.actor, project["entityName"], project["name"], name)
    except RunNotFound:
        return None
    return run_of(view)


@field("Project", "run")
def project_run(project: dict[str, Any], info: Any, name: str, **_: Any) -> dict[str, Any] | None:
    """A run of the project (null if none): clients before 0.26 poll ``stopped``;
    ``Api().run(path)`` reads it."""
    return _run_in(project, info, name)


@query("model")
def model(info: Any, name: str | None = None, entityName: str | None = None) -> Any:  # noqa: N803
    """``entity/project`` by W&B's older name (``model``); the client resumes a
    run through its ``bucket``."""
    ctx = context(info)
    return project_of(entityName or ctx.actor.name, name or DEFAULT_PROJECT)


@field("Project", "bucket")
def project_bucket(
    project: dict[str, Any], info: Any, name: str, **_: Any
) -> dict[str, Any] | None:
    """A run of the project by its W&B name (null if none: a new run)."""
    return _run_in(project, info, name)


# -- HTTP routes ---------------------------------------------------------------------


def _refused(exc: RegaliaError) -> JSONResponse:
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)


async def _bounded_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise TooLarge(f"a file_stream request has at most {limit} bytes", limit=limit)
    return bytes(body)


def _decoded(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body, gunzipped if the client compressed it (never past ``limit``)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise InvalidRequest(f"a file_stream body is JSON or gzip, not {encoding[:40]!r}")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise InvalidRequest("the file_stream body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"a file_stream request has at most {limit} bytes unpacked", limit=limit)
    return out


def parse_file_stream(raw: bytes) -> dict[str, Any]:
    """A file_stream request: a JSON object."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequest("the file_stream body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("a file_stream body is a JSON object")
    return body


def apply_file_stream(
    service: Service, actor: Actor, where: tuple[str, str, str], raw: bytes, encoding: str
) -> None:
    """Unpack, check and apply one file_stream request (in a worker thread)."""
    body = parse_file_stream(_decoded(raw, encoding, MAX_FILE_STREAM_BODY))
    service.wandb_file_stream(actor, *where, body)


@router.post("/files/{entity}/{project}/{run}/file_stream")
async def file_stream(entity: str, project: str, run: str, request: Request) -> JSONResponse:
    """The run's stream: summary, console output, uploaded files, completion."""
    try:
        auth: Authenticator = request.app.state.auth
        actor = await auth.actor(request)
        raw = await _bounded_body(request, MAX_FILE_STREAM_BODY)
        encoding = request.headers.get("content-encoding", "")
        service: Service = request.app.state.service
        where = (entity, project, run)
        await run_in_threadpool(apply_file_stream, service, actor, where, raw, encoding)
    except RegaliaError as exc:
        return _refused(exc)
    return JSONResponse({})


@router.get("/wandb/run-files/{token}")
async def get_run_file(token: str, request: Request) -> Response:
    """One kept run file, at the URL ``Run.files`` signed (no credentials)."""
    service: Service = request.app.state.service
    try:
        claims = signer_of(request).verify(token, RUN_FILE_GET)
        actor = await run_in_threadpool(service.actor_of_user, int(claims["u"]))
        kept = await run_in_threadpool(service.run_file, actor, int(claims["r"]), str(claims["n"]))
        return await run_in_threadpool(blob_response, service, kept.digest)
    except RegaliaError as exc:
        return _refused(exc)


@router.put("/wandb/run-files/{token}")
async def put_run_file(token: str, request: Request) -> JSONResponse:
    """One run file's bytes, at the URL ``createRunFiles`` signed (no credentials)."""
    service: Service = request.app.state.service
    try:
        claims = signer_of(request).verify(token, RUN_FILE_PURPOSE)
        actor = await run_in_threadpool(service.actor_of_user, int(claims["u"]))
        # Still the user's to write (checked again with the file): a refusal
        # comes before the bytes are received.
        await run_in_threadpool(service.wandb_run_key, actor, int(claims["r"]))
        tmp = request.app.state.uploads.temp_path()
        try:
            try:
                blob = await receive_file(tmp, request.stream(), MAX_RUN_FILE)
            except TooLarge:
                raise TooLarge(f"a run file has at most {MAX_RUN_FILE} bytes") from None
            await run_in_threadpool(
                service.store_run_file, actor, int(claims["r"]), str(claims["n"]), tmp, blob
            )
        finally:
            tmp.unlink(missing_ok=True)
    except RegaliaError as exc:
        return _refused(exc)
    return JSONResponse({})
