"""Upload and download URLs that authorize themselves.

The `wandb` client sends no credentials to the URLs the server hands out for
file transfers (its HTTP client attaches the API key to GraphQL and the file
stream only), so each such URL carries its own authority: a purpose, the
user it was issued to, what it is for, and an expiry, signed with HMAC-SHA256
under a key derived from the deployment's secret key (``REGALIA_SECRET_KEY``,
shared by every server process). A URL grants exactly one transfer scope and
nothing once it expires; the route re-checks the user's rights when used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from starlette.requests import Request

from regalia.errors import PermissionDenied

UPLOAD_TTL_S = 24 * 3600  # a big upload may queue for a while behind others
DOWNLOAD_TTL_S = 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ExpiredUrl(PermissionDenied):
    code = "url_expired"


class UrlSigner:
    """Signs and checks the tokens of self-authorizing URLs."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"regalia wandb transfer urls v1", hashlib.sha256).digest()

    def sign(
        self, purpose: str, claims: dict[str, Any], ttl_s: int, now: float | None = None
    ) -> str:
        """A token for ``purpose`` carrying ``claims`` (JSON values), valid ``ttl_s`` seconds."""
        body = {"p": purpose, "e": int((now if now is not None else time.time()) + ttl_s), **claims}
        payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        mac = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{mac}"

    def verify(self, token: str, purpose: str, now: float | None = None) -> dict[str, Any]:
        """The claims of a token issued for ``purpose``.

        Raises:
            PermissionDenied: the token is malformed, forged, for another purpose,
                or (:class:`ExpiredUrl`) expired.
        """
        payload, _, mac = token.partition(".")
        expected = _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
        if not mac or not hmac.compare_digest(mac, expected):
            raise PermissionDenied("this transfer URL is not one this server signed")
        try:
            claims = json.loads(_unb64(payload))
        except ValueError:
            raise PermissionDenied("this transfer URL is not one this server signed") from None
        if not isinstance(claims, dict) or claims.get("p") != purpose:
            raise PermissionDenied("this transfer URL is for another kind of transfer")
        if int(claims.get("e", 0)) < (now if now is not None else time.time()):
            raise ExpiredUrl(
                "this transfer URL has expired; ask for the file again (the client refreshes it)"
            )
        return claims


def signer_of(request: Request) -> UrlSigner:
    """The app's signer (made once, from the service's secret key)."""
    state = request.app.state
    signer = getattr(state, "wandb_signer", None)
    if signer is None:
        signer = state.wandb_signer = UrlSigner(state.service.secret_box.key)
    return signer
