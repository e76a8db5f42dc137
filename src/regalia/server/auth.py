"""API-key authentication: ``Authorization: Bearer KEY``, or HTTP Basic with
user ``api`` and the key as password (the form the W&B client sends).

Keys are stored hashed (SHA-256); an authenticated key is remembered for a
couple of seconds so that a burst of requests costs one lookup. Revoking a key
(any route: the service counts revocations, see ``Service.keys_changed``) or
changing a role through this process forgets every remembered key at once;
another server process sees the change within :data:`KEY_CACHE_SECONDS`.

A web UI session is looked up on every page (one indexed query: logging out
or revoking the key ends it at once, in every process); only the user's roles
and teams are remembered as for keys.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from regalia.errors import Unauthenticated
from regalia.service import Actor, Service

KEY_CACHE_SECONDS = 2.0
BASIC_USER = "api"


def api_key_from(header: str | None) -> str:
    """The API key carried by an ``Authorization`` header value."""
    if not header:
        raise Unauthenticated(
            "send an API key: 'Authorization: Bearer KEY' (or HTTP Basic, user 'api')"
        )
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer" and value.strip():
        return value.strip()
    if scheme == "basic":
        try:
            user, sep, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("the Basic credentials are not valid base64") from None
        if sep and password and user == BASIC_USER:
            return password
        raise Unauthenticated("HTTP Basic needs user 'api' and the API key as password")
    raise Unauthenticated("the Authorization header must be 'Bearer KEY' or HTTP Basic")


K = TypeVar("K")


class _Remembered(Generic[K]):
    """Actors remembered for ``ttl`` seconds each, at most 10,000 at a time."""

    def __init__(self, ttl: float, lock: threading.Lock) -> None:
        self.ttl = ttl
        self._lock = lock
        self._items: dict[K, tuple[float, Actor]] = {}

    def get(self, key: K) -> Actor | None:
        hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: K, actor: Actor) -> Actor:
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, actor)
        return actor

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Authenticator:
    """Turns a request's credentials into an :class:`Actor`."""

    def __init__(self, service: Service, ttl: float = KEY_CACHE_SECONDS) -> None:
        self.service = service
        self.ttl = ttl
        lock = threading.Lock()
        self._known: _Remembered[str] = _Remembered(ttl, lock)
        self._users: _Remembered[int] = _Remembered(ttl, lock)
        self._epoch = service.keys_epoch

    async def actor(self, request: Request) -> Actor:
        return await self.actor_of_key(api_key_from(request.headers.get("authorization")))

    async def actor_of_key(self, key: str) -> Actor:
        """The key's owner (remembered for ``ttl`` seconds, and forgotten at once when
        the service revokes keys, whichever route did it). A refused key is never
        remembered: it is looked up (and its reason told) each time."""
        self._forget_if_keys_changed()
        hit = self._known.get(key)
        if hit is not None:
            return hit
        return self._known.put(key, await run_in_threadpool(self.service.authenticate, key))

    async def actor_of_session(self, token: str) -> Actor:
        """The user of a live web session (see ``Service.web_session_user``)."""
        return await run_in_threadpool(self._session_actor, token)

    def _session_actor(self, token: str) -> Actor:
        self._forget_if_keys_changed()
        user_id = self.service.web_session_user(token)
        hit = self._users.get(user_id)
        if hit is not None:
            return hit
        return self._users.put(user_id, self.service.actor_of_user(user_id))

    def _forget_if_keys_changed(self) -> None:
        epoch = self.service.keys_epoch
        if epoch != self._epoch:
            self.forget()
            self._epoch = epoch

    def forget(self) -> None:
        """Drop every remembered key and user (after a revocation or a role change)."""
        self._known.clear()
        self._users.clear()
