"""The worker's side of the outbox: claim due deliveries under a lease, and
record how each try went (SPEC §5).

A worker takes deliveries whose time has come and that nobody holds, sets
``lease_owner``/``lease_until`` on them in one transaction (PostgreSQL skips
rows another worker is claiming: ``FOR UPDATE SKIP LOCKED``; SQLite writers are
serialized anyway), sends them, and records the result only if it still holds
the lease. A worker that dies leaves its leases to expire: the deliveries go
again (at least once; receivers deduplicate on the delivery id).

Targets are paced across workers: a target (one URL) gets ``rate`` messages
per second on average (``automation_targets.next_send_at`` is the time the
next one is due, as in the generic cell rate algorithm). A target may run up
to half a second ahead of that (a burst of ``rate / 2`` messages), so a fast
webhook has several deliveries in flight; at Slack's one message per second
per channel there is no burst.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import insert, or_, select, update

from regalia.config import Settings
from regalia.core.automations import (
    MASK,
    EventType,
    body_bytes,
    parse_template,
    render,
    retry_delay,
)
from regalia.errors import IntegrityError
from regalia.service.automations import ACCESS_TOKEN, AutomationsMixin
from regalia.service.base import as_utc
from regalia.store.models import (
    Automation,
    AutomationTarget,
    Delivery,
    DeliveryAttempt,
)
from regalia.store.repo import Repo

EXCERPT = 500  # characters of a response or error kept per try
BURST_S = 0.5  # a target may run this far ahead of its pace
LOG = logging.getLogger("regalia.worker")


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard a worker tries: ``max_attempts`` tries in all, waits from
    ``retry_base_s`` doubling to ``retry_cap_s`` (with jitter), ``timeout_s`` per
    request, a lease of ``lease_s`` (a dead worker's deliveries go again after
    it), and per-target rates in messages per second (0: no limit)."""

    max_attempts: int = 8
    retry_base_s: float = 2.0
    retry_cap_s: float = 600.0
    timeout_s: float = 10.0
    lease_s: float = 30.0
    slack_rate: float = 1.0
    webhook_rate: float = 20.0

    @classmethod
    def for_settings(cls, settings: Settings) -> DeliveryPolicy:
        """The policy the settings ask for; a lease outlasts two timeouts and the
        bookkeeping around them, so a live worker never loses one."""
        return cls(
            max_attempts=settings.automation_max_attempts,
            timeout_s=settings.automation_timeout_s,
            lease_s=2 * settings.automation_timeout_s + 10,
            slack_rate=settings.automation_slack_rate,
            webhook_rate=settings.automation_webhook_rate,
        )


@dataclass(frozen=True)
class Job:
    """A claimed delivery with what it takes to send it (secrets in the clear:
    keep it in memory only)."""

    delivery_id: int
    public_id: str
    event: str
    attempt: int  # this try's number, from 1
    action: str
    target: str
    body: bytes
    masked_payload: str
    access_token: str | None = None
    signing_secret: str | None = None
    is_test: bool = False


@dataclass
class Claim:
    """What a worker leased, and in how many seconds a target that had to wait
    for its pace gets its next slot (None: no target waits)."""

    jobs: list[Job]
    next_slot_s: float | None

    def paced(self, wait_s: float) -> None:
        self.next_slot_s = wait_s if self.next_slot_s is None else min(self.next_slot_s, wait_s)


@dataclass(frozen=True)
class Outcome:
    """How one try went."""

    ok: bool
    response_code: int | None
    excerpt: str
    duration_ms: int
    retry_after_s: float | None = None
    permanent: bool = False  # a refusal that retrying will not change (e.g. 404)


def target_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


class DeliveryMixin(AutomationsMixin):
    def claim_deliveries(self, worker: str, policy: DeliveryPolicy, *, limit: int = 20) -> Claim:
        """Lease up to ``limit`` due deliveries for ``worker`` (each target at its
        pace) and return them ready to send, with how soon a target that had to
        wait gets its next slot. A delivery whose target must wait is put off to
        that time, so a backlog for a slow-paced target (a Slack channel) does not
        hold up the others behind it."""
        box = self.secret_box

        def fn(repo: Repo) -> Claim:
            now = self.now()
            due = (
                select(Delivery, Automation)
                .join(Automation, Automation.id == Delivery.automation_id)
                .where(
                    Delivery.status == "pending",
                    Delivery.next_attempt_at <= now,
                    or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
                )
                .order_by(Delivery.next_attempt_at, Delivery.id)
                .limit(limit * 2)
            )
            if repo.dialect == "postgresql":
                due = due.with_for_update(of=Delivery, skip_locked=True)
            claim = Claim([], None)
            paces: dict[str, AutomationTarget] = {}
            put_off: list[dict[str, Any]] = []
            for d, a in repo.s.execute(due).all():
                if len(claim.jobs) >= limit:
                    break
                try:
                    target = box.open(a.target_enc)
                    key = target_key(target)
                    wait = self._pace(repo, paces, key, a.action, policy, now)
                    if wait is not None:
                        claim.paced(wait)
                        put_off.append(
                            {"id": d.id, "next_attempt_at": now + timedelta(seconds=wait)}
                        )
                        continue
                    job = self._job(d, a, target)
                except IntegrityError as exc:
                    # Sealed with another key: this worker is misconfigured (or shares the
                    # database with another deployment). Leave it to a worker that has the
                    # key, out of this worker's way for a lease's time.
                    LOG.warning("delivery %s skipped: %s", d.public_id, exc.message)
                    later = now + timedelta(seconds=policy.lease_s)
                    put_off.append({"id": d.id, "next_attempt_at": later})
                    continue
                claim.jobs.append(job)
            repo.s.flush()  # the pacing rows, before the Core statements below
            if put_off:
                repo.s.execute(update(Delivery), put_off)
            if claim.jobs:
                repo.s.execute(
                    update(Delivery)
                    .where(Delivery.id.in_([job.delivery_id for job in claim.jobs]))
                    .values(lease_owner=worker, lease_until=now + timedelta(seconds=policy.lease_s))
                    .execution_options(synchronize_session=False)
                )
            return claim

        return self.db.write(fn)

    def _pace(
        self,
        repo: Repo,
        paces: dict[str, AutomationTarget],
        key: str,
        action: str,
        policy: DeliveryPolicy,
        now: datetime,
    ) -> float | None:
        """Take a sending slot of the target if one is free (None); else the
        seconds until one is. ``paces`` keeps the rows this claim touched."""
        rate = policy.slack_rate if action == "slack" else policy.webhook_rate
        if rate <= 0:
            return None
        gap = timedelta(seconds=1.0 / rate)
        ahead = gap * max(0, int(rate * BURST_S) - 1)  # how far ahead of its pace it may run
        row = paces.get(key) or repo.s.get(AutomationTarget, key)
        if row is None:
            row = AutomationTarget(key=key, next_send_at=now)
            repo.add(row)
        paces[key] = row
        due = max(as_utc(row.next_send_at), now)
        if due - ahead > now:
            return (due - ahead - now).total_seconds()
        row.next_send_at = due + gap
        return None

    def _job(self, d: Delivery, a: Automation, target: str) -> Job:
        box = self.secret_box
        token = box.open(a.token_enc) if a.token_enc else None
        signing = box.open(a.signing_secret_enc) if a.signing_secret_enc else None
        named: dict[str, str] = json.loads(box.open(a.secrets_enc)) if a.secrets_enc else {}
        if token:
            named[ACCESS_TOKEN] = token
        variables = dict(d.variables)
        if a.action == "slack":
            payload: Any = {"text": self.slack_text(variables, test=bool(d.is_test))}
            masked = payload
        else:
            template = a.payload_template
            doc = parse_template(template, set(named)) if template else None
            if doc is None:
                payload = masked = variables
            else:
                payload = render(doc, variables | named)
                masked = render(doc, variables | dict.fromkeys(named, MASK))
        return Job(
            delivery_id=d.id,
            public_id=d.public_id,
            event=d.event,
            attempt=d.attempts + 1,
            action=a.action,
            target=target,
            body=body_bytes(payload),
            masked_payload=body_bytes(masked).decode(),
            access_token=token,
            signing_secret=signing,
            is_test=bool(d.is_test),
        )

    def slack_text(self, v: dict[str, Any], *, test: bool = False) -> str:
        """A readable Slack message: who did what to which version, linked to it."""
        path = v.get("artifact_version_string") or ""
        base = (self.settings.public_url or "").rstrip("/")
        registry, collection = v.get("registry_name"), v.get("artifact_collection_name")
        version = v.get("artifact_version") or ""
        page = f"/registries/{quote(str(registry), safe='')}/collections/{collection}/{version}"
        link = base + page if base else ""
        name = f"<{link}|{path}>" if link else f"`{path}`"
        who = f"*{v.get('event_author')}*"
        what = {
            EventType.LINK_ARTIFACT.value: f"linked {name}",
            EventType.ADD_ARTIFACT_ALIAS.value: f"added the alias `{v.get('alias')}` to {name}",
            EventType.REMOVE_ARTIFACT_ALIAS.value: f"removed the alias `{v.get('alias')}` "
            f"from {name}",
            EventType.UNLINK_ARTIFACT.value: f"unlinked {name}",
            EventType.ADD_ARTIFACT_TAG.value: f"tagged {name} with `{v.get('tag')}`",
        }.get(v.get("event_type") or "", f"changed {name}")
        return ("[test] " if test else "") + f"{who} {what}"

    def finish_deliveries(
        self, worker: str, done: Sequence[tuple[Job, Outcome]], policy: DeliveryPolicy
    ) -> list[str | None]:
        """Record tries in one transaction, each only if ``worker`` still holds
        its lease; return each delivery's status (None: the lease was lost)."""

        def fn(repo: Repo) -> list[str | None]:
            now = self.now()
            ids = sorted(job.delivery_id for job, _ in done)
            held = {
                row.id
                for row in repo.s.execute(
                    select(Delivery.id)
                    .where(
                        Delivery.id.in_(ids),
                        Delivery.lease_owner == worker,
                        Delivery.status == "pending",
                    )
                    .with_for_update()
                )
            }
            changes: list[dict[str, Any]] = []
            attempts: list[dict[str, Any]] = []
            statuses: list[str | None] = []
            for job, outcome in done:
                if job.delivery_id not in held:
                    statuses.append(None)
                    continue
                held.discard(job.delivery_id)  # a job listed twice counts once
                change = self._outcome(job, outcome, policy, now)
                changes.append(change)
                statuses.append(change["status"])
                attempts.append(
                    {
                        "delivery_id": job.delivery_id,
                        "attempt": job.attempt,
                        "started_at": now - timedelta(milliseconds=outcome.duration_ms),
                        "duration_ms": outcome.duration_ms,
                        "response_code": outcome.response_code,
                        "excerpt": outcome.excerpt[:EXCERPT],
                        "worker": worker,
                    }
                )
            if changes:  # two batched statements, whatever the number of tries
                repo.s.execute(update(Delivery), changes)
                repo.s.execute(insert(DeliveryAttempt), attempts)
            return statuses

        return self.db.write(fn) if done else []

    @staticmethod
    def _outcome(
        job: Job, outcome: Outcome, policy: DeliveryPolicy, now: datetime
    ) -> dict[str, Any]:
        """The delivery's columns after this try (the same keys every time, so the
        updates of a batch go as one statement)."""
        if outcome.ok:
            status, next_at = "succeeded", now
        elif outcome.permanent or job.attempt >= policy.max_attempts:
            status, next_at = "failed", now
        else:
            wait = retry_delay(
                job.attempt,
                base_s=policy.retry_base_s,
                cap_s=policy.retry_cap_s,
                retry_after_s=outcome.retry_after_s,
            )
            status, next_at = "pending", now + timedelta(seconds=wait)
        return {
            "id": job.delivery_id,
            "attempts": job.attempt,
            "payload": job.masked_payload,
            "response_code": outcome.response_code,
            "error": None if outcome.ok else outcome.excerpt[:EXCERPT],
            "lease_owner": None,
            "lease_until": None,
            "status": status,
            "next_attempt_at": next_at,
            "finished_at": None if status == "pending" else now,
        }

    def release_leases(self, worker: str) -> None:
        """Give back what ``worker`` holds (on a clean stop)."""

        def fn(repo: Repo) -> None:
            repo.s.execute(
                update(Delivery)
                .where(Delivery.lease_owner == worker, Delivery.status == "pending")
                .values(lease_owner=None, lease_until=None)
            )

        self.db.write(fn)
