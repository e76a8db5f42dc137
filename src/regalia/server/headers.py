"""Security headers on every response (a plain ASGI middleware, like
``observe.Observer``: no per-request task).

Every response says ``X-Content-Type-Options: nosniff``, ``Referrer-Policy:
same-origin`` and ``X-Frame-Options: DENY``, and carries a Content Security
Policy: the web UI's pages may load scripts, styles and images from this
server only (no inline script or style, no plugins, forms post here only, no
framing); the API docs page (``/docs``, Swagger UI) likewise, with images
from ``data:`` URLs (its icons); everything else (JSON, files) may load
nothing and runs sandboxed if a browser renders it. A header the route set
itself is kept.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)
CSP = b"content-security-policy"


def policy_for(path: str, content_type: bytes) -> str:
    """The Content Security Policy of a response to ``path``."""
    if not content_type.startswith(b"text/html"):
        return OTHER_POLICY
    return DOCS_POLICY if path == "/docs" else PAGE_POLICY


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                headers.extend(h for h in ALWAYS if h[0] not in names)
                if CSP not in names:
                    kind = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                    headers.append((CSP, policy_for(path, kind).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)
