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
Before each try the target's host is resolved once and every address it got
is checked (unless private targets are allowed); the request then goes to a
checked address, with the URL's ``Host`` header and, for https, its name for
TLS (SNI and certificate verification), so the name is never resolved again
between the check and the connection (DNS rebinding). Checked addresses are
kept ``CHECK_SECONDS`` per host, and those are the addresses used. Redirects
are not followed, and proxies from the environment are not used (a proxy would
resolve the name itself).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from collections import OrderedDict

import httpx

from regalia.core.automations import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse_retry_after,
    signature,
)
from regalia.core.targets import (
    IPAddress,
    Resolver,
    Target,
    addresses_of,
    first_refusal,
    parse_target,
    redact_url,
    system_resolve,
)
from regalia.errors import InvalidRequest, RegaliaError
from regalia.service.delivery import DeliveryPolicy, Job, Outcome
from regalia.service.usecases import Service

LOG = logging.getLogger("regalia.worker")
RETRYABLE = {408, 425, 429}
POLL_SECONDS = 0.5
CHECK_SECONDS = 30.0  # how long a host's checked addresses are used


class Unreachable(Exception):
    """The target's host did not resolve (this try fails; a later one may not)."""


class PinnedTransport(httpx.AsyncBaseTransport):
    """Connection pools for requests sent to an IP address: one for plain http
    and IP literals, and one per TLS name (the ``sni_hostname`` extension), so a
    TLS connection made and verified for one name never carries a request for
    another name that has the same address. At most ``max_names`` TLS pools are
    kept (the least recently used is closed)."""

    def __init__(
        self, *, limits: httpx.Limits, verify: ssl.SSLContext | bool = True, max_names: int = 64
    ) -> None:
        self._limits = limits
        self._verify = verify
        self._max_names = max_names
        self._plain = self._pool()
        self._named: OrderedDict[str, httpx.AsyncHTTPTransport] = OrderedDict()

    def _pool(self) -> httpx.AsyncHTTPTransport:
        return httpx.AsyncHTTPTransport(limits=self._limits, verify=self._verify)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = request.extensions.get("sni_hostname")
        if not name:
            return await self._plain.handle_async_request(request)
        pool = self._named.get(name)
        if pool is None:
            pool = self._named[name] = self._pool()
        self._named.move_to_end(name)
        if len(self._named) > self._max_names:  # (no await before: the order holds)
            await self._named.popitem(last=False)[1].aclose()
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        await self._plain.aclose()
        for pool in self._named.values():
            await pool.aclose()
        self._named.clear()


class DeliveryWorker:
    """Claims due deliveries, keeps up to ``concurrency`` tries in flight (a slow
    target holds one slot, not the others), and records finished tries in
    batches (one transaction for all that finished meanwhile)."""

    def __init__(
        self,
        service: Service,
        policy: DeliveryPolicy | None = None,
        *,
        concurrency: int = 16,
        resolve: Resolver = system_resolve,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Args: ``resolve`` turns a host name into addresses (the system's
        resolver; tests inject one), ``verify`` the TLS verification (httpx's),
        ``transport`` what sends the requests (a :class:`PinnedTransport`)."""
        self.service = service
        self.policy = policy or DeliveryPolicy.for_settings(service.settings)
        self.name = f"worker-{uuid.uuid4().hex[:12]}"
        self.concurrency = concurrency
        self.claim_at_least = max(1, concurrency // 4)  # free slots worth a claim
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Queue[tuple[Job, Outcome]] = asyncio.Queue()
        self.resolve = resolve
        self.transport = transport
        self.verify = verify
        # host -> (until, its checked addresses, why they may not be called)
        self._checked: dict[str, tuple[float, tuple[IPAddress, ...], str | None]] = {}

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
                timeout=self.policy.timeout_s,
                follow_redirects=False,
                transport=self.transport or PinnedTransport(limits=limits, verify=self.verify),
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

    async def route(self, url: str) -> tuple[Target, IPAddress]:
        """Where a try to ``url`` connects: the target and one of its checked
        addresses (the host resolved once per ``CHECK_SECONDS``).

        Raises:
            InvalidRequest: the target may not be called (a final answer).
            Unreachable: its host did not resolve.
        """
        target = parse_target(url)
        now = time.monotonic()
        hit = self._checked.get(target.host)
        if hit is None or hit[0] <= now:
            try:
                if target.literal is not None:
                    addresses = addresses_of(target, self.resolve)
                else:  # a name lookup blocks: not on the event loop
                    addresses = await asyncio.to_thread(addresses_of, target, self.resolve)
            except (OSError, UnicodeError, InvalidRequest) as exc:
                raise Unreachable(
                    f"cannot resolve the target host {target.host!r}: {exc}"
                ) from None
            allow = self.service.settings.automation_allow_private
            refusal = None if allow else first_refusal(target, addresses)
            if len(self._checked) > 10_000:
                self._checked.clear()
            hit = self._checked[target.host] = (now + CHECK_SECONDS, addresses, refusal)
        if hit[2] is not None:
            raise InvalidRequest(hit[2])
        return target, hit[1][0]

    async def send(self, client: httpx.AsyncClient, job: Job) -> Outcome:
        started = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            target, address = await self.route(job.target)
        except InvalidRequest as exc:
            return Outcome(False, None, exc.message, took(), permanent=True)
        except Unreachable as exc:
            return Outcome(False, None, str(exc), took())
        connect_to = target.url_for(address)
        stamp = int(time.time())
        headers = {
            "Host": target.host_header,
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
            response = await client.post(
                connect_to,
                content=job.body,
                headers=headers,
                extensions={"sni_hostname": target.tls_name} if target.tls_name else {},
            )
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
