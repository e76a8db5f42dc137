"""Where the SDK sends its calls.

:class:`InProcessBackend` runs the service in this process on the embedded
default (or PostgreSQL when ``REGALIA_DATABASE_URL`` is set). It binds the
acting user once, so the SDK calls the service's use cases without repeating
who acts. :class:`~regalia.sdk.http.HttpBackend` offers the same methods over
a server's REST API; :func:`connect` picks one:

1. ``REGALIA_BASE_URL`` (with ``REGALIA_API_KEY``) set: that server;
2. else a login saved by ``regalia login`` in ``$REGALIA_HOME/login.json``;
3. else the store in this process, saying so once per process on stderr
   (:data:`LOCAL_NOTICE`): a user who meant to reach a server learns at once.

:func:`resolve` tells where that is and where the key comes from (``regalia
whoami`` shows it).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regalia.blobs.base import BlobStore, ProgressSink, StoredBlob
from regalia.config import Settings
from regalia.errors import InvalidRequest, Unauthenticated
from regalia.sdk.cache import ArtifactCache, default_max_bytes
from regalia.service import Actor

if TYPE_CHECKING:
    from regalia.sdk.http import HttpBackend

API_KEY_ENV = "REGALIA_API_KEY"
BASE_URL_ENV = "REGALIA_BASE_URL"
LOGIN_FILE = "login.json"
LOCAL_NOTICE = (
    "regalia: using the local store in {home} "
    "(no server: set REGALIA_BASE_URL or run 'regalia login')"
)
_local_notice_shown = False  # once per process (see connect)


class InProcessBackend:
    """The service in this process, acting as one user.

    With no API key (argument or ``REGALIA_API_KEY``), the actor is the local
    owner: an org admin of the organization created on first use.
    """

    def __init__(self, settings: Settings | None = None, *, api_key: str | None = None) -> None:
        from regalia.service import Service

        self.settings = settings or Settings.from_env()
        self.service = Service(self.settings)
        key = api_key or os.environ.get(API_KEY_ENV)
        self.api_key: str | None = key or None  # None: the local owner acts
        if key:
            try:
                self.actor: Actor = self.service.authenticate(key)
            except Unauthenticated as exc:
                self.service.close()
                raise Unauthenticated(
                    f"the local store in {self.settings.home} refused the API key: "
                    f"{exc.message}; unset {API_KEY_ENV} (or leave out --api-key) to act as "
                    "its owner, or make a key of this store with 'regalia init'",
                    **exc.details,
                ) from None
        else:
            self.actor = self.service.ensure_org()
        self.cache = ArtifactCache(self.settings.cache_dir, default_max_bytes())

    def blobs_for(self, membership_id: int) -> BlobStore:
        """The store to download a version's files from (here: the store itself)."""
        return self.service.blobs

    def store_file(self, path: Path, progress: ProgressSink | None = None) -> StoredBlob:
        """Store a file's content; the acting user may then reference it (SPEC §7)."""
        return self.service.store_file(self.actor, path, progress=progress)

    def store_files(
        self, paths: Sequence[Path], progress: ProgressSink | None = None
    ) -> list[StoredBlob]:
        return self.service.store_files(self.actor, paths, progress=progress)

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


def login_path(settings: Settings) -> Path:
    return settings.home / LOGIN_FILE


def save_login(settings: Settings, base_url: str, api_key: str) -> Path:
    """Remember a server and key for the SDK and CLI (readable by this user only)."""
    path = login_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"base_url": base_url.rstrip("/"), "api_key": api_key}, f)
    os.replace(tmp, path)
    return path


def saved_login(settings: Settings) -> tuple[str, str] | None:
    try:
        data = json.loads(login_path(settings).read_text())
        return str(data["base_url"]), str(data["api_key"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest(
            f"{login_path(settings)} is damaged; run 'regalia login' again"
        ) from None


@dataclass(frozen=True)
class Target:
    """Where :func:`connect` goes, and why.

    Attributes:
        base_url: the server, or None for the store in this process.
        url_from: ``"REGALIA_BASE_URL"`` or ``"saved login"`` (None: local store).
        api_key: the key to act with (None: the local store's owner).
        key_from: ``"argument"``, ``"REGALIA_API_KEY"``, ``"saved login"`` or None.
        login_file: the saved login read, if any.
    """

    base_url: str | None
    url_from: str | None
    api_key: str | None
    key_from: str | None
    login_file: Path | None


def resolve(settings: Settings, *, api_key: str | None = None) -> Target:
    """Where the SDK and CLI go with these settings and environment (nothing is opened)."""
    base_url = os.environ.get(BASE_URL_ENV) or None
    key_from = "argument" if api_key else API_KEY_ENV if os.environ.get(API_KEY_ENV) else None
    key = api_key or os.environ.get(API_KEY_ENV) or None
    if base_url:
        return Target(base_url, BASE_URL_ENV, key, key_from, None)
    saved = saved_login(settings)
    if saved is not None:
        saved_url, saved_key = saved
        return Target(
            saved_url,
            "saved login",
            key or saved_key,
            key_from or "saved login",
            login_path(settings),
        )
    return Target(None, None, key, key_from, None)


def connect(
    settings: Settings | None = None, *, api_key: str | None = None, notice: bool = True
) -> InProcessBackend | HttpBackend:
    """The backend the environment asks for (see the module docstring).

    Args:
        notice: on falling back to the local store, say so on stderr (once per
            process); off for callers that report where they are themselves.
    """
    settings = settings or Settings.from_env()
    target = resolve(settings, api_key=api_key)
    if target.base_url:
        from regalia.sdk.http import HttpBackend

        if not target.api_key:
            raise Unauthenticated(
                f"{BASE_URL_ENV} is set but no API key: set {API_KEY_ENV} or run 'regalia login'"
            )
        return HttpBackend(target.base_url, target.api_key, settings=settings)
    if notice:
        _say_local_store(settings)
    return InProcessBackend(settings, api_key=target.api_key)


def _say_local_store(settings: Settings) -> None:
    global _local_notice_shown
    if not _local_notice_shown:
        _local_notice_shown = True
        print(LOCAL_NOTICE.format(home=settings.home), file=sys.stderr, flush=True)


if TYPE_CHECKING:
    Backend = InProcessBackend | HttpBackend
