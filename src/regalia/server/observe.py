"""What a server tells its operator: structured logs and Prometheus metrics.

:class:`Observer` is a plain ASGI middleware (no per-request task switch):
it times every request, counts it by route template and status, writes one
JSON log line, and refuses bodies over the JSON limit with 413 before they
are read.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regalia.errors import TooLarge

LOG = logging.getLogger("regalia.server")
MAX_JSON_BODY = 16 * 1024 * 1024
API_PREFIX = "/api/v1"
STREAMED_PREFIXES = (
    f"{API_PREFIX}/blobs/",
    f"{API_PREFIX}/uploads/",
    "/wandb/artifact-files/",  # the wandb client's file uploads (server/wandb/log.py)
    "/wandb/run-files/",  # its run files (server/wandb/runs.py: MAX_RUN_FILE)
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extras."""

    RESERVED = set(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self.RESERVED and key != "color_message" and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("regalia")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = [handler]
        logging.getLogger(name).propagate = False


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "regalia_http_requests",
            "HTTP requests handled, by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "regalia_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "regalia_http_requests_in_flight", "Requests being handled", registry=self.registry
        )
        self.bytes_in = Counter(
            "regalia_upload_bytes", "Bytes of file content received", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Observer:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith(STREAMED_PREFIXES):
            for name, value in scope["headers"]:
                if name == b"content-length" and int(value or 0) > MAX_JSON_BODY:
                    await _too_large(send)
                    return
        status = 500
        started = time.perf_counter()
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            elapsed = time.perf_counter() - started
            route = route_label(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            if status >= 500 or path != "/healthz":
                LOG.info(
                    "request",
                    extra={
                        "method": method,
                        "path": path,
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Counted before the last bytes leave: a client that reads the
                # response and then asks /metrics sees its own request.
                record()
            await send(message)

        app_receive: Receive = receive
        app_send: Send = sending
        if not path.startswith(STREAMED_PREFIXES):
            app_receive, app_send = _bounded(receive, sending)
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, app_receive, app_send)
        finally:
            self.metrics.in_flight.dec()
            record()


class CatchAll:
    """An unexpected error answers 500 ``internal_error`` (logged with its
    traceback) and leaves the connection open for the client's next request.

    Starlette's own last resort (``ServerErrorMiddleware``) sends its 500 and then
    raises the error again, and uvicorn closes a connection whose application
    raised: a client that keeps its connection alive (the SDK) then fails its
    next request too. Only when the response has already begun is the error
    raised on, since closing the connection is then the only way to tell the
    client the body is cut short.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if started:
                raise
            LOG.exception("unexpected error", extra={"path": scope.get("path")})
            body = json.dumps(
                {
                    "error": {
                        "code": "internal_error",
                        "message": "internal server error (see the server log)",
                        "details": {},
                    }
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})


def _bounded(receive: Receive, send: Send) -> tuple[Receive, Send]:
    """Cut a body without Content-Length (chunked) off at the JSON limit too:
    answer 413 at once, tell the app the client left, and drop what it sends."""
    seen = 0
    refused = False

    async def bounded() -> Message:
        nonlocal seen, refused
        message = await receive()
        if message["type"] == "http.request" and not refused:
            seen += len(message.get("body", b""))
            if seen > MAX_JSON_BODY:
                refused = True
                await _too_large(send)
                return {"type": "http.disconnect"}
        return message

    async def sending(message: Message) -> None:
        if not refused:
            await send(message)

    return bounded, sending


def route_label(scope: Scope) -> str:
    """The route template that matched (``/api/v1/versions/{membership_id}``), so
    metrics have one series per route, not per URL."""
    found = getattr(scope.get("route"), "path", None)
    if found is None:
        return "unmatched"
    template = str(found)
    # Routes of an included router report their path without its prefix.
    if scope["path"].startswith(API_PREFIX + "/") and not template.startswith(API_PREFIX):
        return API_PREFIX + template
    return template


async def _too_large(send: Send) -> None:
    err = TooLarge(f"the request body is larger than {MAX_JSON_BODY} bytes", limit=MAX_JSON_BODY)
    body = json.dumps({"error": err.to_dict()}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
