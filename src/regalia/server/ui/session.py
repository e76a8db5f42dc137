"""The web UI's cookies: the session, the forms' CSRF tokens, and their flags.

The session cookie holds a random token of a server-side session
(``service/sessions.py``): logging out deletes the session, so a copy of the
cookie is worthless afterwards; revoking the API key it was opened with ends
it too; it ends on its own after 12 hours.

Every form carries a CSRF token: an HMAC of the session token under a key
derived from the deployment's secret; a POST whose token does not match is
refused. Every cookie is HttpOnly and SameSite (Lax for the session, so links
from elsewhere open pages logged in), and ``Secure`` whenever the browser
reached the server over HTTPS: directly, through a reverse proxy that says so
(``regalia server --proxy-headers``), or when ``REGALIA_PUBLIC_URL`` is https.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from regalia.config import Settings

COOKIE = "regalia_session"


class FormTokens:
    """Makes and checks the CSRF tokens of a session's forms."""

    def __init__(self, master: bytes) -> None:
        # A key of its own, derived from the deployment's secret key.
        self._mac_key = hmac.new(master, b"regalia-csrf", hashlib.sha256).digest()

    def csrf_token(self, session: str) -> str:
        return hmac.new(self._mac_key, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str | None, token: str | None) -> bool:
        if not session or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session), token)


def over_https(request: Request) -> bool:
    """Whether the browser talks to this server over HTTPS (as far as it can tell:
    the connection, a trusted proxy's X-Forwarded-Proto, or the public URL)."""
    if request.url.scheme == "https":
        return True
    settings: Settings | None = getattr(request.app.state, "settings", None)
    public = (settings.public_url or "") if settings is not None else ""
    return public.lower().startswith("https://")


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    *,
    max_age: int,
    samesite: Literal["lax", "strict"] = "lax",
) -> None:
    """Set one of the UI's cookies, with the flags every one of them has."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite=samesite,
        secure=over_https(request),
        path="/",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, secure=over_https(request))


def set_session(response: Response, request: Request, token: str, max_age: int) -> None:
    set_cookie(response, request, COOKIE, token, max_age=max_age)


def clear_session(response: Response, request: Request) -> None:
    clear_cookie(response, request, COOKIE)
