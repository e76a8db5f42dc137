"""The ASGI application: ``create_app(settings)`` builds everything, no globals.

FastAPI (over Starlette) was chosen for the OpenAPI document it derives from
the typed routes (served at ``/openapi.json`` and browsable at ``/docs``,
with Swagger UI vendored so it works offline) and for pydantic request
validation; the hot paths return pre-serialized JSON so validation is the only
per-request overhead it adds over bare Starlette.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from regalia import __version__
from regalia.config import Settings
from regalia.errors import RegaliaError
from regalia.server import (
    openapi,
    routes_admin,
    routes_automations,
    routes_blobs,
    routes_registries,
    routes_versions,
    ui,
)
from regalia.server.auth import Authenticator
from regalia.server.deps import clean_url
from regalia.server.headers import SecurityHeaders
from regalia.server.observe import CatchAll, Metrics, Observer
from regalia.server.responses import Health
from regalia.server.sweeper import collect_periodically, sweep_periodically
from regalia.server.ui.common import LoginNeeded, error_page, login_redirect, wants_page
from regalia.server.uploads import UploadArea
from regalia.server.wandb import engine as wandb_engine
from regalia.server.wandb import graphql as wandb_graphql
from regalia.server.wandb import log as wandb_log
from regalia.server.wandb import reads as wandb_reads
from regalia.server.wandb import runs as wandb_runs
from regalia.server.wandb.trace import WandbTrace
from regalia.service import Service

LOG = logging.getLogger("regalia.server")
STATIC = Path(__file__).parent / "static"
HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
}

# Swagger UI, vendored (works offline), started by a script file (no inline
# script: see server/headers.py).
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/swagger/swagger-ui.css">
<link rel="icon" href="/static/swagger/favicon.png">
<title>Regalia API</title>
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/swagger/init.js"></script>
</body>
</html>
"""


class PrometheusText(Response):
    media_type = "text/plain; version=0.0.4"


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}},
        status_code=status,
    )


def create_app(settings: Settings, *, service: Service | None = None) -> FastAPI:
    """The Regalia server for ``settings`` (or around an existing ``service``).
    With its own service it also runs a delivery worker for the automations,
    unless ``REGALIA_AUTOMATION_WORKER=0``."""
    own_service = service is None
    svc = service or Service(settings)
    run_worker = own_service and settings.automation_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in anyio's thread pool, whose backend is imported on its
        # first use, in the event loop: ~100 ms that every request (and /healthz)
        # waited for at the first request. Done here, before serving.
        await run_in_threadpool(lambda: None)
        # The wandb client's GraphQL schema is built off the event loop while
        # the server already answers (else its first query would pay for it).
        warming = asyncio.get_running_loop().run_in_executor(None, wandb_engine.warm_up)
        stop = asyncio.Event()
        task = None
        if run_worker:
            from regalia.worker import DeliveryWorker

            task = asyncio.create_task(DeliveryWorker(svc).run(stop))
        sweeper = asyncio.create_task(sweep_periodically(svc, app.state.uploads, stop))
        collector = asyncio.create_task(
            collect_periodically(svc, stop, settings.gc_interval_s, settings.gc_grace_s)
        )
        yield
        stop.set()
        await warming
        await sweeper
        await collector
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout=15)
            except TimeoutError:
                LOG.warning("the delivery worker did not stop in 15 s")
        if own_service:
            svc.close()

    app = FastAPI(
        title="Regalia",
        version=__version__,
        description="REST API of Regalia, the registry for versioned ML artifacts. "
        "Authenticate with `Authorization: Bearer <API key>`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = svc
    app.state.settings = settings
    app.state.auth = Authenticator(svc)
    app.state.uploads = UploadArea(settings.home / "uploads", settings.upload_part_bytes)
    metrics = Metrics()
    app.state.metrics = metrics

    @app.exception_handler(RegaliaError)
    async def regalia_error(request: Request, exc: RegaliaError) -> Response:
        if exc.http_status >= 500:
            LOG.error("request failed: %s", exc, extra={"code": exc.code})
        if wants_page(request):  # a browser on a page of the web UI
            return error_page(request, exc.http_status, exc.message)
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        return login_redirect(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "where": ".".join(str(p) for p in e.get("loc", ())),
                # A body that is not JSON: the reason (e.g. "body['x'] is NaN: ...").
                "problem": str((e.get("ctx") or {}).get("error") or e.get("msg", ""))
                if e.get("type") == "json_invalid"
                else e.get("msg", ""),
            }
            for e in exc.errors()
        ]
        text = "; ".join(
            p["problem"] if p["where"].startswith("body.") and p["problem"].startswith("body")
            else f"{p['where']}: {p['problem']}"
            for p in problems[:5]
        )  # fmt: skip
        return error_response(
            400, "invalid_request", f"invalid request: {text}", {"problems": problems}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.get(
        "/healthz",
        tags=["system"],
        summary="Liveness: the process answers",
        response_model=Health,
    )
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get(
        "/metrics",
        tags=["system"],
        summary="Prometheus metrics (text exposition format 0.0.4)",
        response_class=PrometheusText,
    )
    async def prometheus() -> Response:
        return PrometheusText(metrics.render())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (
        routes_admin,
        routes_registries,
        routes_versions,
        routes_blobs,
        routes_automations,
    ):
        app.include_router(module.router, prefix="/api/v1", dependencies=[Depends(clean_url)])
    app.include_router(wandb_graphql.router)
    app.include_router(wandb_log.router)
    app.include_router(wandb_runs.router)
    app.include_router(wandb_reads.router)
    app.include_router(ui.router)
    # Inside the Observer, so that it counts the 500s CatchAll answers, and
    # inside SecurityHeaders, so that those 500s carry the headers too.
    app.add_middleware(CatchAll)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Observer, metrics=metrics)
    if trace := os.environ.get("REGALIA_WANDB_TRACE"):
        app.add_middleware(WandbTrace, path=trace)
    openapi.install(app)
    return app
