"""Where the SDK sends its calls.

:class:`InProcessBackend` runs the service in this process on the embedded
default (or PostgreSQL when ``REGALIA_DATABASE_URL`` is set). It binds the
acting user once, so the SDK calls the service's use cases without repeating
who acts. A later HTTP backend offers the same methods over the REST API.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regalia.blobs.base import BlobStore, StoredBlob
from regalia.config import Settings
from regalia.sdk.cache import ArtifactCache, default_max_bytes
from regalia.service import Actor, Service

API_KEY_ENV = "REGALIA_API_KEY"


class InProcessBackend:
    """The service in this process, acting as one user.

    With no API key (argument or ``REGALIA_API_KEY``), the actor is the local
    owner: an org admin of the organization created on first use.
    """

    def __init__(self, settings: Settings | None = None, *, api_key: str | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.service = Service(self.settings)
        key = api_key or os.environ.get(API_KEY_ENV)
        if key:
            self.actor: Actor = self.service.authenticate(key)
        else:
            self.actor = self.service.ensure_org()
        self.cache = ArtifactCache(self.settings.cache_dir, default_max_bytes())

    @property
    def blobs(self) -> BlobStore:
        return self.service.blobs

    def store_file(self, path: Path, progress: Any = None) -> StoredBlob:
        return self.service.store_file(path, progress=progress)

    def refresh(self) -> None:
        self.actor = self.service.refresh_actor(self.actor)

    def close(self) -> None:
        self.service.close()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """``backend.link(...)`` is ``service.link(actor, ...)``."""
        method = getattr(self.service, name)
        if not callable(method) or name.startswith("_"):
            raise AttributeError(name)
        return functools.partial(method, self.actor)
