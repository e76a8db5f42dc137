"""The service's methods, called through a real server over HTTP.

``ServiceOverHttp`` looks like :class:`regalia.service.Service` (every method
takes the acting :class:`Actor` first), but sends each call with that actor's
own API key through the SDK's HTTP backend. Tests written against the service
run unchanged through the REST API: authentication, authorization at the
server, the error envelope and its rebuilt exceptions all included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from regalia.config import Settings
from regalia.sdk.http import HttpBackend
from regalia.service import Actor, Service

LOCAL = {"now", "store_file", "ensure_org", "close", "settings", "blobs", "db"}


class ServiceOverHttp:
    def __init__(self, local: Service, base_url: str, settings: Settings) -> None:
        self.local = local
        self.base_url = base_url
        self.settings = settings
        self._backends: dict[int, HttpBackend] = {}

    def authenticate(self, api_key: str) -> Actor:
        backend = HttpBackend(self.base_url, api_key, settings=self.settings)
        self._backends[backend.actor.user_id] = backend
        return backend.actor

    def backend(self, actor: Actor) -> HttpBackend:
        """The HTTP client of ``actor`` (given an API key of its own on first use)."""
        if actor.user_id not in self._backends:
            self.authenticate(self.local.create_api_key(actor))
        return self._backends[actor.user_id]

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()

    def __getattr__(self, name: str) -> Any:
        if name in LOCAL:
            return getattr(self.local, name)

        def call(actor: Actor, *args: Any, **kwargs: Any) -> Any:
            method: Callable[..., Any] = getattr(self.backend(actor), name)
            return method(*args, **kwargs)

        return call
