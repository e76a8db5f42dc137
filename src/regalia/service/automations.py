"""Use cases of automations (SPEC §5): create, list, enable or disable, delete,
send a test, see the deliveries, redeliver one.

Members and admins of a registry create and delete its automations; whoever
may see the registry may see them (without their secrets). Deliveries are
queued by the outbox (``store/outbox.py``) in the transaction of each change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from sqlalchemy import select

from regalia.core.automations import (
    SAMPLE_ALIASES,
    SAMPLE_EVENTS,
    SAMPLE_TAGS,
    EventFilter,
    EventType,
    FilterKind,
    parse_template,
    validate_secret_name,
)
from regalia.core.names import MAX_ID, validate_entity_name
from regalia.core.roles import Permission
from regalia.core.targets import check_target, redact_url
from regalia.errors import (
    AlreadyExists,
    AutomationNotFound,
    CollectionNotFound,
    InvalidRequest,
    NotFound,
)
from regalia.secretbox import KEY_FILE, SecretBox
from regalia.service.access import check, registry_role, visible_registry
from regalia.service.base import ServiceBase, as_utc
from regalia.service.views import Actor, AttemptView, AutomationView, DeliveryView
from regalia.store.models import (
    Automation,
    Collection,
    Delivery,
    DeliveryAttempt,
    Registry,
    User,
)
from regalia.store.outbox import delivery_row, event_variables
from regalia.store.repo import Repo

ACTIONS = ("slack", "webhook")
ACCESS_TOKEN = "ACCESS_TOKEN"  # the access token, as a payload variable (as in W&B)


class AutomationsMixin(ServiceBase):
    @cached_property
    def secret_box(self) -> SecretBox:
        return SecretBox.for_settings(self.settings)

    def check_secret_key(self) -> None:
        """Make sure this process uses the deployment's secret key: the first
        server of the organization (``REGALIA_ORG``) to start records its key's
        fingerprint in the database; a server or worker with another key (a node
        without ``REGALIA_SECRET_KEY``, which made its own
        ``$REGALIA_HOME/secret.key``) is refused here, at start, rather than
        failing later on every sealed secret, signed URL and form token.

        Raises:
            InvalidRequest: the key is not the one the organization's other
                nodes use.
        """
        mine = self.secret_box.fingerprint

        def fn(repo: Repo) -> str | None:
            org = repo.org_by_name(self.settings.org_name)
            if org is None:  # nothing sealed yet: the first server records the key
                return None
            return repo.ensure_key_fingerprint(org.id, mine, self.now())

        recorded = self.db.write(fn)
        if recorded is not None and recorded != mine:
            where = (
                "REGALIA_SECRET_KEY"
                if self.settings.secret_key
                else f"{self.settings.home / KEY_FILE} (REGALIA_SECRET_KEY is not set)"
            )
            raise InvalidRequest(
                f"this node's secret key ({where}) is not the one the other nodes of "
                "this database use: give every `regalia server` and `regalia worker` of "
                "a deployment the same REGALIA_SECRET_KEY (e.g. the content of the first "
                "node's $REGALIA_HOME/secret.key)"
            )

    # -- create, list, change ------------------------------------------------------------
    def create_automation(
        self,
        actor: Actor,
        *,
        registry: str,
        name: str,
        event: str,
        action: str,
        target: str,
        collection: str | None = None,
        filter_kind: str | None = None,
        filter_value: str | None = None,
        access_token: str | None = None,
        signing_secret: str | None = None,
        secrets: Mapping[str, str] | None = None,
        payload_template: str | None = None,
        description: str = "",
        enabled: bool = True,
    ) -> AutomationView:
        """A new automation on ``registry`` (or one of its collections).

        ``action`` is ``slack`` (``target``: an incoming-webhook URL) or ``webhook``
        (``target``: any URL; optional ``access_token`` sent as
        ``Authorization: Bearer``, ``signing_secret`` that signs each body,
        ``secrets`` usable as ``${NAME}`` in ``payload_template``).
        """
        validate_entity_name(name, "automation name")
        try:
            kind = EventType(event)
        except ValueError:
            raise InvalidRequest(
                f"unknown event {event!r}; events are: {', '.join(e.value for e in EventType)}"
            ) from None
        event_filter = EventFilter.parse(kind, filter_kind, filter_value)
        if action not in ACTIONS:
            raise InvalidRequest(f"unknown action {action!r}; actions are: slack, webhook")
        check_target(target, allow_private=self.settings.automation_allow_private)
        named = dict(secrets or {})
        for secret_name in named:
            validate_secret_name(secret_name)
        if action == "slack" and (access_token or signing_secret or named or payload_template):
            raise InvalidRequest(
                "a Slack action takes only the incoming-webhook URL: its message is "
                "written by Regalia (use a webhook action for a payload template or secrets)"
            )
        if ACCESS_TOKEN in named:
            raise InvalidRequest(f"{ACCESS_TOKEN} is the access token's name; pick another")
        names = set(named) | ({ACCESS_TOKEN} if access_token else set())
        if payload_template is not None:
            parse_template(payload_template, names)
        box = self.secret_box

        def fn(repo: Repo) -> AutomationView:
            reg, role = visible_registry(repo, actor, registry)
            check(role, Permission.AUTOMATION_EDIT, reg)
            coll_id: int | None = None
            if collection is not None:
                coll = repo.find_collection(registry_id=reg.id, name=collection)
                if coll is None:
                    raise CollectionNotFound(
                        f"collection {collection!r} not found in registry {reg.name!r}",
                        registry=reg.name,
                        collection=collection,
                    )
                coll_id = coll.id
            if repo.s.scalar(
                select(Automation.id).where(
                    Automation.registry_id == reg.id, Automation.name_key == name.lower()
                )
            ):
                raise AlreadyExists(
                    f"registry {reg.name!r} already has an automation named {name!r}"
                )
            now = self.now()
            row = Automation(
                org_id=actor.org_id,
                registry_id=reg.id,
                collection_id=coll_id,
                name=name,
                name_key=name.lower(),
                description=description,
                event=kind.value,
                filter_kind=event_filter.kind.value if event_filter else None,
                filter_value=event_filter.value if event_filter else None,
                action=action,
                target_enc=box.seal(target),
                target_hint=redact_url(target),
                token_enc=box.seal(access_token) if access_token else None,
                signing_secret_enc=box.seal(signing_secret) if signing_secret else None,
                secrets_enc=box.seal(json.dumps(named)) if named else None,
                secret_names=sorted(names),
                payload_template=payload_template,
                enabled=enabled,
                created_by=actor.user_id,
                created_at=now,
                updated_at=now,
            )
            repo.add(row)
            repo.s.flush()
            self._record(repo, actor, "automation_create", None, registry_id=reg.id,
                         automation=name, event=kind.value)  # fmt: skip
            return self._automation_view(repo, row)

        return self.db.write(fn)

    def automations(self, actor: Actor, registry: str) -> list[AutomationView]:
        def fn(repo: Repo) -> list[AutomationView]:
            reg, _role = visible_registry(repo, actor, registry)
            rows = repo.s.scalars(
                select(Automation).where(Automation.registry_id == reg.id).order_by(Automation.id)
            ).all()
            return [self._automation_view(repo, a) for a in rows]

        return self.db.read(fn)

    def get_automation(self, actor: Actor, automation_id: int) -> AutomationView:
        return self.db.read(
            lambda repo: self._automation_view(repo, self._automation(repo, actor, automation_id))
        )

    def set_automation_enabled(
        self, actor: Actor, automation_id: int, enabled: bool
    ) -> AutomationView:
        def fn(repo: Repo) -> AutomationView:
            row = self._automation(repo, actor, automation_id, Permission.AUTOMATION_EDIT)
            if row.enabled != enabled:
                row.enabled = enabled
                row.updated_at = self.now()
            return self._automation_view(repo, row)

        return self.db.write(fn)

    def delete_automation(self, actor: Actor, automation_id: int) -> None:
        def fn(repo: Repo) -> None:
            row = self._automation(repo, actor, automation_id, Permission.AUTOMATION_EDIT)
            self._record(repo, actor, "automation_delete", None, registry_id=row.registry_id,
                         automation=row.name)  # fmt: skip
            repo.s.delete(row)

        self.db.write(fn)

    # -- deliveries -----------------------------------------------------------------------
    def deliveries(
        self, actor: Actor, automation_id: int, *, limit: int = 100
    ) -> list[DeliveryView]:
        """The automation's deliveries, newest first."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit is 1 to 1000")

        def fn(repo: Repo) -> list[DeliveryView]:
            row = self._automation(repo, actor, automation_id)
            found = repo.s.scalars(
                select(Delivery)
                .where(Delivery.automation_id == row.id)
                .order_by(Delivery.id.desc())
                .limit(limit)
            ).all()
            return [_delivery_view(d) for d in found]

        return self.db.read(fn)

    def get_delivery(self, actor: Actor, delivery_id: str) -> DeliveryView:
        """One delivery, by the id it is sent with."""
        return self.db.read(lambda repo: _delivery_view(self._delivery(repo, actor, delivery_id)))

    def delivery_attempts(self, actor: Actor, delivery_id: str) -> list[AttemptView]:
        """Every try of a delivery, first first."""

        def fn(repo: Repo) -> list[AttemptView]:
            found = self._delivery(repo, actor, delivery_id)
            rows = repo.s.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == found.id)
                .order_by(DeliveryAttempt.attempt, DeliveryAttempt.id)
            ).all()
            return [
                AttemptView(
                    attempt=a.attempt,
                    started_at=as_utc(a.started_at),
                    duration_ms=a.duration_ms,
                    response_code=a.response_code,
                    excerpt=a.excerpt,
                    worker=a.worker,
                )
                for a in rows
            ]

        return self.db.read(fn)

    def test_automation(self, actor: Actor, automation_id: int) -> DeliveryView:
        """Queue a sample event for the automation (sent even if it is disabled)."""

        def fn(repo: Repo) -> DeliveryView:
            row = self._automation(repo, actor, automation_id, Permission.AUTOMATION_EDIT)
            reg = repo.get(Registry, row.registry_id)
            coll = repo.get(Collection, row.collection_id) if row.collection_id else None
            event = EventType(row.event)
            kind = FilterKind(row.filter_kind) if row.filter_kind else None
            shown = EventFilter(kind, row.filter_value or "").sample() if kind else None
            tagged = event is EventType.ADD_ARTIFACT_TAG
            if shown is None and event in SAMPLE_EVENTS:
                shown = (SAMPLE_TAGS if tagged else SAMPLE_ALIASES)[0]
            sample = event_variables(
                event=event,
                author=actor.name,
                alias=None if tagged else shown,
                tag=shown if tagged else None,
                registry=reg.name,
                collection=coll.name if coll else "sample-collection",
                collection_type=coll.type if coll else "model",
                version="v0",
                entity=actor.name,
                project="sample-project",
                source="sample-artifact",
                metadata={"sample": True},
            )
            return self._queue(repo, row.id, row.event, sample, is_test=True)

        return self.db.write(fn)

    def redeliver(self, actor: Actor, delivery_id: str) -> DeliveryView:
        """Send a delivery's event again, as a new delivery (with a new id)."""

        def fn(repo: Repo) -> DeliveryView:
            old = self._delivery(repo, actor, delivery_id, Permission.AUTOMATION_EDIT)
            row = repo.get(Automation, old.automation_id)
            return self._queue(repo, row.id, old.event, dict(old.variables), is_test=old.is_test)

        return self.db.write(fn)

    def _queue(
        self, repo: Repo, automation_id: int, event: str, variables: dict[str, Any], *,
        is_test: bool,
    ) -> DeliveryView:  # fmt: skip
        row = Delivery(**delivery_row(automation_id, event, variables, self.now(), is_test=is_test))
        repo.add(row)
        repo.s.flush()
        repo.queued_deliveries += 1
        return _delivery_view(row)

    # -- helpers ----------------------------------------------------------------------------
    def _automation(
        self,
        repo: Repo,
        actor: Actor,
        automation_id: int,
        permission: Permission = Permission.REGISTRY_VIEW,
    ) -> Automation:
        # An id past the database's integers cannot exist (and must not reach SQL).
        row: Automation | None = (
            repo.get(Automation, automation_id) if 0 < automation_id <= MAX_ID else None
        )
        reg = repo.get(Registry, row.registry_id) if row is not None else None
        role = registry_role(repo, actor, reg) if reg is not None else None
        if row is None or reg is None or role is None or row.org_id != actor.org_id:
            raise AutomationNotFound(f"automation {automation_id} not found")
        check(role, permission, reg)
        return row

    def _delivery(
        self,
        repo: Repo,
        actor: Actor,
        delivery_id: str,
        permission: Permission = Permission.REGISTRY_VIEW,
    ) -> Delivery:
        """The delivery, if the actor may see (or, with ``permission``, act on) its automation."""
        found = repo.s.scalar(select(Delivery).where(Delivery.public_id == delivery_id))
        if found is None:
            raise NotFound(f"delivery {delivery_id!r} not found")
        try:
            self._automation(repo, actor, found.automation_id, permission)
        except AutomationNotFound:
            raise NotFound(f"delivery {delivery_id!r} not found") from None
        return found

    def _automation_view(self, repo: Repo, row: Automation) -> AutomationView:
        reg = repo.get(Registry, row.registry_id)
        coll = repo.get(Collection, row.collection_id) if row.collection_id else None
        creator = repo.get(User, row.created_by) if row.created_by else None
        return AutomationView(
            id=row.id,
            name=row.name,
            description=row.description or "",
            registry=reg.name,
            collection=coll.name if coll else None,
            event=row.event,
            filter_kind=row.filter_kind,
            filter_value=row.filter_value,
            action=row.action,
            target=row.target_hint,
            has_access_token=row.token_enc is not None,
            has_signing_secret=row.signing_secret_enc is not None,
            secret_names=sorted(n for n in row.secret_names or [] if n != ACCESS_TOKEN),
            payload_template=row.payload_template,
            enabled=bool(row.enabled),
            created_by=creator.name if creator else None,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )


def _delivery_view(d: Delivery) -> DeliveryView:
    return DeliveryView(
        id=d.public_id,
        automation_id=d.automation_id,
        event=d.event,
        status=d.status,
        attempts=d.attempts,
        payload=d.payload,
        response_code=d.response_code,
        error=d.error,
        is_test=bool(d.is_test),
        created_at=as_utc(d.created_at),
        next_attempt_at=as_utc(d.next_attempt_at) if d.status == "pending" else None,
        finished_at=as_utc(d.finished_at) if d.finished_at else None,
    )
