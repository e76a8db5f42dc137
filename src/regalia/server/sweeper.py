"""What the server throws away, at start and every :data:`SWEEP_INTERVAL` seconds.

* temporary files of whole ``PUT``s and of ``complete``s left by a crash,
  once untouched for :data:`~regalia.server.uploads.TEMP_MAX_AGE` (15 minutes);
* resumable uploads untouched for :data:`~regalia.server.uploads.UPLOAD_MAX_AGE`
  (7 days: a client may resume for that long);
* direct uploads (S3 store) untouched for 7 days, with their parts in the
  bucket, and multipart uploads in the bucket no record names;
* grants to reference content older than
  :data:`~regalia.service.content.GRANT_LIFETIME` (7 days), so the table stays
  bounded (expired grants are ignored anyway).

Every server process sweeps; the sweeps are idempotent, so several at once do
no harm.

Garbage collection (:mod:`regalia.service.gc`) runs on its own schedule,
every ``REGALIA_GC_INTERVAL`` (6 hours; 0: never) with the grace period
``REGALIA_GC_GRACE`` (24 hours), first one interval after the start. Several
processes collecting at once serialize on the database's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from starlette.concurrency import run_in_threadpool

from regalia.errors import RegaliaError, StorageUnavailable
from regalia.server.uploads import UploadArea
from regalia.service import Service
from regalia.service.views import GcReport

LOG = logging.getLogger("regalia.server")
SWEEP_INTERVAL = 300.0


@dataclass(frozen=True)
class Swept:
    uploads: int  # upload folders, temporary files and direct uploads removed
    grants: int  # expired grants deleted


def sweep_once(svc: Service, area: UploadArea, *, now: float | None = None) -> Swept:
    """One sweep of the upload area and the grants; logs what it removed."""
    swept = Swept(area.sweep(now=now) + _sweep_direct(svc), svc.expire_grants())
    svc.expire_wandb_drafts()  # wandb client logs never committed (service/wandb_uploads.py)
    if swept.uploads or swept.grants:
        LOG.info(
            "removed abandoned uploads and expired grants",
            extra={"uploads": swept.uploads, "grants": swept.grants},
        )
    return swept


def _sweep_direct(svc: Service) -> int:
    """Abandoned direct uploads swept; a bucket that refuses to list its
    multipart uploads (a narrow access policy) is logged, not fatal."""
    try:
        return svc.sweep_direct_uploads()
    except StorageUnavailable as exc:
        LOG.warning("the sweep of abandoned direct uploads failed: %s", exc)
        return 0


async def run_every(
    interval: float, stop: asyncio.Event, job: Callable[[], object], what: str
) -> None:
    """Run ``job`` in a worker thread every ``interval`` seconds until ``stop``
    is set (the first run waits one interval). A failed run is logged as
    ``what`` failed, and the next one comes on time."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if stop.is_set():
            return
        try:
            await run_in_threadpool(job)
        except (OSError, RegaliaError) as exc:
            LOG.warning("%s failed: %s", what, exc)


async def sweep_periodically(
    svc: Service, area: UploadArea, stop: asyncio.Event, interval: float = SWEEP_INTERVAL
) -> None:
    """Sweep every ``interval`` seconds until ``stop`` is set (the first sweep
    waits one interval: ``regalia server`` sweeps once before serving)."""
    await run_every(interval, stop, lambda: sweep_once(svc, area), "the sweep of abandoned uploads")


def collect_once(svc: Service, grace_s: float) -> GcReport:
    """One garbage collection with a grace period of ``grace_s``; logs what it freed."""
    report = svc.sweep_garbage(timedelta(seconds=grace_s))
    if report.freed_blobs or report.failed:
        LOG.info(
            "garbage collection freed unreferenced contents",
            extra={
                "freed_blobs": report.freed_blobs,
                "freed_bytes": report.freed_bytes,
                "failed": report.failed,
            },
        )
    return report


async def collect_periodically(
    svc: Service, stop: asyncio.Event, interval: float, grace_s: float
) -> None:
    """Collect garbage every ``interval`` seconds until ``stop`` is set (``interval``
    0: never; the first collection waits one interval)."""
    if interval <= 0:
        return
    await run_every(interval, stop, lambda: collect_once(svc, grace_s), "garbage collection")
