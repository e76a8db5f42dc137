"""The web UI's session: who is logged in, and the token every form carries.

Logging in checks an API key and stores it in a cookie sealed with the
deployment's secret key (Fernet: encrypted and authenticated, so the browser
can neither read nor forge it). Each request authenticates the key again
(through the server's short key cache), so revoking a key ends its sessions.

Every form carries a CSRF token: an HMAC of the session cookie under the same
secret; a POST whose token does not match is refused. The cookie is HttpOnly
and SameSite=Lax, and Secure when the request came over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from starlette.requests import Request
from starlette.responses import Response

COOKIE = "regalia_session"
MAX_AGE_S = 7 * 24 * 3600


class SessionSealer:
    """Seals and opens session cookies; makes and checks CSRF tokens."""

    def __init__(self, master: bytes) -> None:
        # Keys of their own, derived from the deployment's secret key: a session
        # cookie is never a valid sealed automation secret, nor the reverse.
        derived = hmac.new(master, b"regalia-session", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._mac_key = hmac.new(master, b"regalia-csrf", hashlib.sha256).digest()

    def seal(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode()

    def open(self, cookie: str | None) -> str | None:
        """The API key in a session cookie, or None (absent, forged or expired)."""
        if not cookie:
            return None
        try:
            return self._fernet.decrypt(cookie.encode(), ttl=MAX_AGE_S).decode()
        except (InvalidToken, ValueError):
            return None

    def csrf_token(self, cookie: str) -> str:
        return hmac.new(self._mac_key, cookie.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.csrf_token(cookie), token)


def set_session(response: Response, request: Request, sealed: str) -> None:
    response.set_cookie(
        COOKIE,
        sealed,
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/")
