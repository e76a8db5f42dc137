"""Automations in the SDK: ``registry.create_automation(...)``,
``registry.automations()``, and what each one and its deliveries offer.

    reg = Api().registry("model")
    hook = reg.create_automation(
        "notify-prod", event="ADD_ARTIFACT_ALIAS", action="webhook",
        target="https://ci.example.com/hooks/regalia",
        filter_kind="alias_regex", filter_value="^prod",
        signing_secret="s3cret",
    )
    hook.test()                       # a sample event, sent by the worker
    for d in hook.deliveries():       # newest first
        print(d.id, d.status, d.response_code)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regalia.service.views import AttemptView, AutomationView, DeliveryView

if TYPE_CHECKING:
    from regalia.sdk.backend import Backend


class Delivery:
    """One event sent (or to send) by an automation; ``id`` is the id receivers
    deduplicate on (``X-Regalia-Delivery``)."""

    def __init__(self, backend: Backend, view: DeliveryView) -> None:
        self._backend = backend
        self._view = view

    id = property(lambda self: self._view.id)
    event = property(lambda self: self._view.event)
    status = property(lambda self: self._view.status)  # pending | succeeded | failed
    attempts = property(lambda self: self._view.attempts)
    payload = property(lambda self: self._view.payload)
    response_code = property(lambda self: self._view.response_code)
    error = property(lambda self: self._view.error)
    is_test = property(lambda self: self._view.is_test)
    created_at = property(lambda self: self._view.created_at)
    finished_at = property(lambda self: self._view.finished_at)

    def load(self) -> Delivery:
        """Read where the delivery stands now."""
        self._view = self._backend.get_delivery(self.id)
        return self

    def tries(self) -> list[AttemptView]:
        """Each try: when, how long, the response code and an excerpt."""
        return self._backend.delivery_attempts(self.id)

    def redeliver(self) -> Delivery:
        """Send the same event again, as a new delivery with its own id."""
        return Delivery(self._backend, self._backend.redeliver(self.id))

    def __repr__(self) -> str:
        return f"<Delivery {self.id} {self.event} {self.status}>"


class Automation:
    """An automation of a registry: an event, an optional filter and an action."""

    def __init__(self, backend: Backend, view: AutomationView) -> None:
        self._backend = backend
        self._view = view

    id = property(lambda self: self._view.id)
    name = property(lambda self: self._view.name)
    description = property(lambda self: self._view.description)
    registry = property(lambda self: self._view.registry)
    collection = property(lambda self: self._view.collection)
    event = property(lambda self: self._view.event)
    filter_kind = property(lambda self: self._view.filter_kind)
    filter_value = property(lambda self: self._view.filter_value)
    action = property(lambda self: self._view.action)
    target = property(lambda self: self._view.target)  # scheme and host only
    payload_template = property(lambda self: self._view.payload_template)
    enabled = property(lambda self: self._view.enabled)

    def enable(self) -> Automation:
        self._view = self._backend.set_automation_enabled(self.id, True)
        return self

    def disable(self) -> Automation:
        self._view = self._backend.set_automation_enabled(self.id, False)
        return self

    def delete(self) -> None:
        self._backend.delete_automation(self.id)

    def test(self) -> Delivery:
        """Queue a sample event (sent even when the automation is disabled)."""
        return Delivery(self._backend, self._backend.test_automation(self.id))

    def deliveries(self, limit: int = 100) -> list[Delivery]:
        """The latest deliveries, newest first."""
        return [Delivery(self._backend, v) for v in self._backend.deliveries(self.id, limit=limit)]

    def load(self) -> Automation:
        self._view = self._backend.get_automation(self.id)
        return self

    def __repr__(self) -> str:
        scope = f"{self.registry}/{self.collection}" if self.collection else self.registry
        return f"<Automation {self.name} on {scope}: {self.event} -> {self.action}>"
