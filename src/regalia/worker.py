"""The delivery worker: sends what the automations' outbox holds (SPEC §5).

It runs inside ``regalia server`` (one per worker process) and as ``regalia
worker`` for scale-out; several workers share the work through leases (see
``service/delivery.py``). Each try is an HTTP POST of the JSON body with::

    Content-Type: application/json
    X-Regalia-Delivery: <id>   X-Regalia-Event: <event type>
    X-Regalia-Timestamp / X-Regalia-Signature   (webhooks with a signing secret)
    Authorization: Bearer <access token>         (webhooks with an access token)

2xx is success. Network errors, timeouts, 5xx, 408, 425 and 429 are retried
with backoff and jitter (Retry-After is obeyed); other 4xx answers are final.
The target is checked again before each try (a host name may have come to point
at a private address).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from urllib.parse import urlsplit

import httpx

from regalia.core.automations import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    check_target,
    parse_retry_after,
    redact_url,
    signature,
)
from regalia.errors import InvalidRequest, RegaliaError
from regalia.service.delivery import DeliveryPolicy, Job, Outcome
from regalia.service.usecases import Service

LOG = logging.getLogger("regalia.worker")
RETRYABLE = {408, 425, 429}
POLL_SECONDS = 0.5


class DeliveryWorker:
    """Claims due deliveries, keeps up to ``concurrency`` tries in flight (a slow
    target holds one slot, not the others), and records finished tries in
    batches (one transaction for all that finished meanwhile)."""

    def __init__(
        self, service: Service, policy: DeliveryPolicy | None = None, *, concurrency: int = 16
    ) -> None:
        self.service = service
        self.policy = policy or DeliveryPolicy.for_settings(service.settings)
        self.name = f"worker-{uuid.uuid4().hex[:12]}"
        self.concurrency = concurrency
        self.claim_at_least = max(1, concurrency // 4)  # free slots worth a claim
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Queue[tuple[Job, Outcome]] = asyncio.Queue()
        self._checked: dict[str, tuple[float, str | None]] = {}  # host -> (until, refusal)

    def wake(self) -> None:
        """Thread-safe: new deliveries were committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set; then finish the tries in flight, record
        them, and give back the leases of what was not tried."""
        self._loop = asyncio.get_running_loop()
        self.service.db.on_deliveries.append(self.wake)
        limits = httpx.Limits(max_connections=self.concurrency)
        recorder = asyncio.create_task(self._record())
        try:
            async with httpx.AsyncClient(
                timeout=self.policy.timeout_s, limits=limits, follow_redirects=False
            ) as client:
                while not stop.is_set():
                    await self._step(client, stop)
                if self._inflight:
                    await asyncio.wait(self._inflight)
            await self._finished.join()
        finally:
            recorder.cancel()
            if self.wake in self.service.db.on_deliveries:
                self.service.db.on_deliveries.remove(self.wake)
            await asyncio.to_thread(self.service.release_leases, self.name)

    async def _step(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """Claim into the free slots, then wait for a reason to look again."""
        free = self.concurrency - len(self._inflight)
        if free < self.claim_at_least and self._inflight:  # too few slots for a claim
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return
        self._wake.clear()  # a commit from now on wakes the wait below
        next_slot_s: float | None = None
        try:
            claim = await asyncio.to_thread(
                self.service.claim_deliveries, self.name, self.policy, limit=free
            )
        except RegaliaError as exc:  # the database is away: try again soon
            LOG.warning("delivery worker: %s", exc)
        else:
            next_slot_s = claim.next_slot_s
            for job in claim.jobs:
                task = asyncio.create_task(self._deliver(client, job))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            if len(claim.jobs) == free:  # there may be more: claim when slots free up
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                return
        # Nothing more is due: wait for a commit, a try to end, a paced target's
        # next slot, or the poll (deliveries queued by other processes).
        wait = min(POLL_SECONDS, next_slot_s or POLL_SECONDS)
        waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(
            [*waiters, *self._inflight], timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in waiters:
            waiter.cancel()

    async def _deliver(self, client: httpx.AsyncClient, job: Job) -> None:
        outcome = await self.send(client, job)
        await self._finished.put((job, outcome))

    async def _record(self) -> None:
        """Record finished tries: whatever finished meanwhile, in one transaction."""
        while True:
            batch = [await self._finished.get()]
            while not self._finished.empty() and len(batch) < 200:
                batch.append(self._finished.get_nowait())
            try:
                statuses = await self._record_batch(batch)
                for (job, outcome), status in zip(batch, statuses, strict=True):
                    LOG.info(
                        "delivery %s try %d to %s: %s",
                        job.public_id,
                        job.attempt,
                        redact_url(job.target),
                        status or "not recorded (lease lost)",
                        extra={"code": outcome.response_code},
                    )
            except Exception:  # a bug: say so, and keep recording the others
                LOG.exception("delivery worker: recording %d tries failed", len(batch))
            finally:
                for _ in batch:
                    self._finished.task_done()

    async def _record_batch(self, batch: list[tuple[Job, Outcome]]) -> list[str | None]:
        """Record the batch, retrying while the database is away; after that its
        leases expire and the deliveries go again (at least once)."""
        for attempt in range(3):
            try:
                return await asyncio.to_thread(
                    self.service.finish_deliveries, self.name, batch, self.policy
                )
            except RegaliaError as exc:
                LOG.warning("delivery worker: cannot record %d tries: %s", len(batch), exc)
                await asyncio.sleep(0.5 * (attempt + 1))
        return [None] * len(batch)

    async def _refusal(self, url: str) -> str | None:
        """Why the target may not be called now (None: it may); host checks are
        kept 30 s (they resolve the host name)."""
        allow = self.service.settings.automation_allow_private
        if allow:
            try:
                check_target(url, allow_private=True)  # no name lookup: no thread
                return None
            except InvalidRequest as exc:
                return exc.message
        host = urlsplit(url).netloc
        now = time.monotonic()
        cached = self._checked.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            await asyncio.to_thread(check_target, url, allow_private=False)
            refusal = None
        except InvalidRequest as exc:
            refusal = exc.message
        self._checked[host] = (now + 30, refusal)
        return refusal

    async def send(self, client: httpx.AsyncClient, job: Job) -> Outcome:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        refusal = await self._refusal(job.target)
        if refusal is not None:
            return Outcome(False, None, refusal, took(), permanent=True)
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Regalia-Automations",
            DELIVERY_HEADER: job.public_id,
            EVENT_HEADER: job.event,
        }
        if job.signing_secret:
            headers[TIMESTAMP_HEADER] = str(stamp)
            headers[SIGNATURE_HEADER] = signature(
                job.signing_secret, job.public_id, stamp, job.body
            )
        if job.access_token:
            headers["Authorization"] = f"Bearer {job.access_token}"
        try:
            response = await client.post(job.target, content=job.body, headers=headers)
        except httpx.TimeoutException:
            return Outcome(False, None, f"timed out after {self.policy.timeout_s:g} s", took())
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}", took())
        text = response.text[:500]
        code = response.status_code
        if 200 <= code < 300:
            return Outcome(True, code, text, took())
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        retryable = code >= 500 or code in RETRYABLE
        return Outcome(
            False,
            code,
            f"HTTP {code}: {text}",
            took(),
            retry_after_s=retry_after if code in (429, 503) else None,
            permanent=not retryable,
        )
