"""A record of what the `wandb` client sends (``REGALIA_WANDB_TRACE=FILE``):
one JSON line per request to the W&B routes, with its method, path, GraphQL
operation name, response status, and whether it carried credentials. Tests
compare client releases with it; an operator can see what a client asked for.
Never the body's values, the key, or the token of a signed URL."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACED = re.compile(r"^/(graphql|files/|wandb/|artifacts|sdk/)")
SIGNED = re.compile(r"^(/wandb/[a-z-]+/)[^/]+$")  # a signed URL: its token is a credential
OPERATION = re.compile(r"(?:^|[^A-Za-z0-9_])(query|mutation)\s+([A-Za-z_][A-Za-z0-9_]*)")


def operation_of(body: bytes) -> str | None:
    """The GraphQL operation's name: ``operationName``, else the first named
    operation of the query (only the body's first 4 KiB are kept)."""
    try:
        request = json.loads(body)
        name = request.get("operationName")
        if isinstance(name, str) and name:
            return name
        text = str(request.get("query", ""))
    except (ValueError, AttributeError):
        text = body.decode(errors="replace").replace("\\n", "\n")
    found = OPERATION.search(text)
    return found.group(2) if found else None


class WandbTrace:
    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not TRACED.match(scope["path"]):
            await self.app(scope, receive, send)
            return
        entry: dict[str, Any] = {
            "t": round(time.time(), 3),
            "method": scope["method"],
            "path": SIGNED.sub(r"\1<token>", scope["path"]),
            "auth": any(k == b"authorization" for k, _ in scope["headers"]),
            "agent": dict(scope["headers"]).get(b"user-agent", b"").decode(errors="replace"),
        }
        head = bytearray()

        async def peek() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(head) < 4096:
                head.extend(message.get("body", b"")[:4096])
            return message

        async def status(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, peek, status)
        finally:
            if scope["path"] == "/graphql":
                entry["operation"] = operation_of(bytes(head))
            line = json.dumps(entry) + "\n"
            with self.lock, open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
