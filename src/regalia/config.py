"""Settings, read once from the environment (no module-level state)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from regalia.core.limits import QUERY_TIMEOUT_S, WRITE_TIMEOUT_S

DEFAULT_ORG = "regalia"
DEFAULT_OWNER = "admin"
DEFAULT_UPLOAD_PART_BYTES = 64 * 1024 * 1024
DEFAULT_DIRECT_PUT_MAX_BYTES = 2 * 1024 * 1024 * 1024


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _number(name: str, default: float, *, low: float, integer: bool = False) -> float:
    """A numeric setting from the environment, at least ``low``; a clear error if not."""
    from regalia.errors import InvalidRequest

    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = low - 1
    if not value >= low:
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(f"{name}={text!r}: it must be {kind} of at least {low:g}")
    return value


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DEFAULT_GC_INTERVAL_S = 6 * 3600.0
DEFAULT_GC_GRACE_S = 24 * 3600.0


def parse_duration(text: str, what: str = "a duration") -> float:
    """Seconds from ``90s``, ``30m``, ``24h``, ``7d`` or a plain number of
    seconds; :class:`~regalia.errors.InvalidRequest` naming ``what`` if not."""
    from regalia.errors import InvalidRequest

    value = text.strip().lower()
    scale = _UNITS.get(value[-1:], 0.0) if value[-1:].isalpha() else 1.0
    number = value[:-1] if value[-1:].isalpha() else value
    try:
        seconds = float(number) * scale
    except ValueError:
        seconds = -1.0
    if not (scale and 0 <= seconds < float("inf")):
        raise InvalidRequest(
            f"{what}={text!r}: give a duration such as 90s, 30m, 24h or 7d (or seconds)"
        )
    return seconds


def _duration(name: str, default: float) -> float:
    text = os.environ.get(name)
    return default if text is None or not text.strip() else parse_duration(text, name)


@dataclass(frozen=True)
class Settings:
    """Where Regalia keeps its data.

    * ``REGALIA_HOME`` (default ``~/.regalia``): the SQLite file, blobs and cache.
    * ``REGALIA_DATABASE_URL``: a PostgreSQL URL instead of the embedded SQLite.
    * ``REGALIA_BLOB_URL``: where blobs are kept: ``s3://BUCKET/PREFIX`` (an
      S3-compatible bucket; endpoint ``REGALIA_S3_ENDPOINT_URL``, else
      ``AWS_ENDPOINT_URL``, else AWS; credentials and region from the standard
      AWS chain), ``file:///PATH`` or a folder path. It takes precedence over
    * ``REGALIA_BLOB_DIR``: the blob store folder, which in turn defaults to
      ``$REGALIA_HOME`` (blobs go in ``blobs/`` inside it).
    * ``REGALIA_ORG``: the organization name created on first use (default ``regalia``).
    * ``REGALIA_SILENT=1``: no progress bars.
    * ``REGALIA_UPLOAD_PART_BYTES``: the part size of resumable uploads a server
      asks for (default 64 MiB).
    * ``REGALIA_DIRECT_PUT_MAX_BYTES``: with an S3 store, contents up to this
      size go to the bucket in one verified ``PUT`` (default 2 GiB, at most
      S3's 5 GiB; a broken one is sent again whole); larger ones in parts. 0:
      always in parts.
    * ``REGALIA_AUTOMATION_ALLOW_PRIVATE=1``: automations may call loopback and
      private addresses (refused by default).
    * ``REGALIA_AUTOMATION_WORKER=0``: ``regalia server`` sends no automation
      deliveries itself (run ``regalia worker`` processes instead).
    * ``REGALIA_SECRET_KEY``: the Fernet key sealing automation secrets and signing
      transfer URLs and form tokens, the same on every node (default: one made
      once in ``$REGALIA_HOME/secret.key``, for a single node; see docs/deploy.md).
    * ``REGALIA_AUTOMATION_MAX_ATTEMPTS`` (8): tries before a delivery is ``failed``;
      ``REGALIA_AUTOMATION_TIMEOUT`` (10 s) per try; ``REGALIA_AUTOMATION_WEBHOOK_RATE``
      (20) and ``REGALIA_AUTOMATION_SLACK_RATE`` (1): messages per second per target
      (0: no limit).
    * ``REGALIA_PUBLIC_URL``: the server's address as users reach it (links in
      Slack messages).
    * ``REGALIA_QUERY_TIMEOUT`` (5 s): how long a read (a filter, a search) may run
      before the database stops it (400 ``query_too_expensive``);
      ``REGALIA_WRITE_TIMEOUT`` (60 s): the same for each statement of a change.
      0 means no limit.
    * ``REGALIA_GC_INTERVAL`` (6h): how often ``regalia server`` collects garbage
      (frees stored contents nothing references); 0 turns it off.
      ``REGALIA_GC_GRACE`` (24h): how old such a content must be to be freed.
      Durations are ``90s``, ``30m``, ``24h``, ``7d`` or plain seconds.
    """

    home: Path
    database_url: str
    blob_dir: Path
    cache_dir: Path
    blob_url: str | None = None
    org_name: str = DEFAULT_ORG
    silent: bool = False
    upload_part_bytes: int = DEFAULT_UPLOAD_PART_BYTES
    direct_put_max_bytes: int = DEFAULT_DIRECT_PUT_MAX_BYTES
    automation_allow_private: bool = False
    public_url: str | None = None
    automation_worker: bool = True
    secret_key: str | None = None
    automation_max_attempts: int = 8
    automation_timeout_s: float = 10.0
    automation_webhook_rate: float = 20.0
    automation_slack_rate: float = 1.0
    query_timeout_s: float = QUERY_TIMEOUT_S
    write_timeout_s: float = WRITE_TIMEOUT_S
    gc_interval_s: float = DEFAULT_GC_INTERVAL_S
    gc_grace_s: float = DEFAULT_GC_GRACE_S

    @classmethod
    def from_env(cls, home: Path | str | None = None) -> Settings:
        root = Path(home or os.environ.get("REGALIA_HOME") or Path.home() / ".regalia")
        root = root.expanduser().resolve()
        url = os.environ.get("REGALIA_DATABASE_URL") or f"sqlite:///{root / 'regalia.db'}"
        blob_dir = Path(os.environ.get("REGALIA_BLOB_DIR") or root)
        cache_dir = Path(os.environ.get("REGALIA_CACHE_DIR") or root / "cache")
        return cls(
            home=root,
            database_url=url,
            blob_dir=blob_dir,
            cache_dir=cache_dir,
            blob_url=os.environ.get("REGALIA_BLOB_URL", "").strip() or None,
            org_name=os.environ.get("REGALIA_ORG") or DEFAULT_ORG,
            silent=_truthy(os.environ.get("REGALIA_SILENT")),
            upload_part_bytes=int(
                os.environ.get("REGALIA_UPLOAD_PART_BYTES") or DEFAULT_UPLOAD_PART_BYTES
            ),
            direct_put_max_bytes=int(
                _number(
                    "REGALIA_DIRECT_PUT_MAX_BYTES",
                    DEFAULT_DIRECT_PUT_MAX_BYTES,
                    low=0,
                    integer=True,
                )
            ),
            automation_allow_private=_truthy(os.environ.get("REGALIA_AUTOMATION_ALLOW_PRIVATE")),
            public_url=os.environ.get("REGALIA_PUBLIC_URL") or None,
            automation_worker=os.environ.get("REGALIA_AUTOMATION_WORKER", "1") != "0",
            secret_key=os.environ.get("REGALIA_SECRET_KEY") or None,
            automation_max_attempts=int(
                _number("REGALIA_AUTOMATION_MAX_ATTEMPTS", 8, low=1, integer=True)
            ),
            automation_timeout_s=_number("REGALIA_AUTOMATION_TIMEOUT", 10.0, low=0.1),
            automation_webhook_rate=_number("REGALIA_AUTOMATION_WEBHOOK_RATE", 20.0, low=0),
            automation_slack_rate=_number("REGALIA_AUTOMATION_SLACK_RATE", 1.0, low=0),
            query_timeout_s=_number("REGALIA_QUERY_TIMEOUT", QUERY_TIMEOUT_S, low=0),
            write_timeout_s=_number("REGALIA_WRITE_TIMEOUT", WRITE_TIMEOUT_S, low=0),
            gc_interval_s=_duration("REGALIA_GC_INTERVAL", DEFAULT_GC_INTERVAL_S),
            gc_grace_s=_duration("REGALIA_GC_GRACE", DEFAULT_GC_GRACE_S),
        )
