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
    def __init__(
        self, service: Service, policy: DeliveryPolicy | None = None, *, concurrency: int = 16
    ) -> None:
        self.service = service
        self.policy = policy or DeliveryPolicy.for_settings(service.settings)
        self.name = f"worker-{uuid.uuid4().hex[:12]}"
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._next_slot_s: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Thread-safe: new deliveries were committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set."""
        self._loop = asyncio.get_running_loop()
        self.service.db.on_deliveries.append(self.wake)
        limits = httpx.Limits(max_connections=self.concurrency)
        try:
            async with httpx.AsyncClient(
                timeout=self.policy.timeout_s, limits=limits, follow_redirects=False
            ) as client:
                while not stop.is_set():
                    try:
                        sent = await self.run_once(client)
                    except RegaliaError as exc:  # the database is away: try again soon
                        LOG.warning("delivery worker: %s", exc)
                        sent = 0
                    if sent == 0:
                        # Nothing to send: wait for a commit, a paced target's next
                        # slot, or the poll (deliveries queued by other processes).
                        wait = min(POLL_SECONDS, self._next_slot_s or POLL_SECONDS)
                        self._wake.clear()
                        waiters = [asyncio.create_task(self._wake.wait()),
                                   asyncio.create_task(stop.wait())]  # fmt: skip
                        _done, pending = await asyncio.wait(
                            waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                        )
                        for task in pending:
                            task.cancel()
        finally:
            if self.wake in self.service.db.on_deliveries:
                self.service.db.on_deliveries.remove(self.wake)
            await asyncio.to_thread(self.service.release_leases, self.name)

    async def run_once(self, client: httpx.AsyncClient) -> int:
        """Claim what is due and send it; return how many tries were made."""
        claim = await asyncio.to_thread(
            self.service.claim_deliveries, self.name, self.policy, limit=self.concurrency
        )
        self._next_slot_s = claim.next_slot_s
        if claim.jobs:
            await asyncio.gather(*(self._deliver(client, job) for job in claim.jobs))
        return len(claim.jobs)

    async def _deliver(self, client: httpx.AsyncClient, job: Job) -> None:
        outcome = await self.send(client, job)
        status = await asyncio.to_thread(
            self.service.finish_delivery, self.name, job, outcome, self.policy
        )
        LOG.info(
            "delivery %s try %d to %s: %s",
            job.public_id,
            job.attempt,
            redact_url(job.target),
            status or "lease lost",
            extra={"code": outcome.response_code},
        )

    async def send(self, client: httpx.AsyncClient, job: Job) -> Outcome:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            await asyncio.to_thread(
                check_target,
                job.target,
                allow_private=self.service.settings.automation_allow_private,
            )
        except InvalidRequest as exc:
            return Outcome(False, None, exc.message, took(), permanent=True)
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
