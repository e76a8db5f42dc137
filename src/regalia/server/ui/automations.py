"""Automation pages: a registry's automations (and the form to create one),
one automation (enable or disable, test, delete) with its deliveries, their
payloads, answers and tries, and redelivery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from regalia.core.automations import EventType, FilterKind
from regalia.core.roles import RegistryRole
from regalia.errors import InvalidRequest
from regalia.server.ui.common import PageActor, apply, at_least, checked_form, render, service_of
from regalia.server.ui.registries import registry_url

router = APIRouter(include_in_schema=False)
Form = Annotated[dict[str, Any], Depends(checked_form)]


def _text(form: dict[str, Any], name: str) -> str | None:
    value = str(form.get(name, "")).strip()
    return value or None


def _secrets(text: str | None) -> dict[str, str]:
    """``NAME=VALUE`` lines."""
    found: dict[str, str] = {}
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise InvalidRequest(f"secret line {name.strip()!r} has no '=': write NAME=VALUE")
        found[name.strip()] = value.strip()
    return found


@router.get("/registries/{name}/automations")
def automations_page(request: Request, name: str, actor: PageActor) -> HTMLResponse:
    svc = service_of(request)
    reg = svc.get_registry(actor, name)
    return render(request, "automations.html", actor, registry=reg,
                  automations=svc.automations(actor, reg.name),
                  can_edit=at_least(reg.role, RegistryRole.MEMBER),
                  events=[e.value for e in EventType],
                  filters=[f.value for f in FilterKind])  # fmt: skip


@router.post("/registries/{name}/automations")
def create(request: Request, name: str, actor: PageActor, form: Form) -> RedirectResponse:
    svc = service_of(request)
    return apply(
        registry_url(name) + "/automations",
        lambda: svc.create_automation(
            actor,
            registry=name,
            name=str(form.get("name", "")).strip(),
            event=str(form.get("event", "")),
            action=str(form.get("action", "")),
            target=str(form.get("target", "")).strip(),
            collection=_text(form, "collection"),
            filter_kind=_text(form, "filter_kind") if _text(form, "filter_value") else None,
            filter_value=_text(form, "filter_value"),
            access_token=_text(form, "access_token"),
            signing_secret=_text(form, "signing_secret"),
            secrets=_secrets(_text(form, "secrets")),
            payload_template=_text(form, "payload_template"),
            description=str(form.get("description", "")).strip(),
        ),
        then=lambda view: f"/automations/{view.id}",
    )


@router.get("/automations/{automation_id}")
def automation_page(request: Request, automation_id: int, actor: PageActor) -> HTMLResponse:
    svc = service_of(request)
    auto = svc.get_automation(actor, automation_id)
    reg = svc.get_registry(actor, auto.registry)
    deliveries = svc.deliveries(actor, automation_id, limit=50)
    can_edit = at_least(reg.role, RegistryRole.MEMBER)
    return render(request, "automation.html", actor, registry=reg, automation=auto,
                  deliveries=deliveries, can_edit=can_edit)  # fmt: skip


@router.get("/automations/{automation_id}/deliveries/{delivery_id}")
def delivery_page(
    request: Request, automation_id: int, delivery_id: str, actor: PageActor
) -> HTMLResponse:
    svc = service_of(request)
    auto = svc.get_automation(actor, automation_id)
    delivery = svc.get_delivery(actor, delivery_id)
    reg = svc.get_registry(actor, auto.registry)
    return render(request, "delivery.html", actor, automation=auto, delivery=delivery,
                  tries=svc.delivery_attempts(actor, delivery_id),
                  can_edit=at_least(reg.role, RegistryRole.MEMBER))  # fmt: skip


@router.post("/automations/{automation_id}/{action}")
def act(
    request: Request, automation_id: int, action: str, actor: PageActor, form: Form
) -> RedirectResponse:
    """enable, disable, test, delete, or redeliver (with ``delivery``)."""
    svc = service_of(request)
    url = f"/automations/{automation_id}"

    def change() -> str:
        """Do it; return where to go next."""
        if action in ("enable", "disable"):
            svc.set_automation_enabled(actor, automation_id, action == "enable")
        elif action == "test":
            svc.test_automation(actor, automation_id)
        elif action == "redeliver":
            svc.redeliver(actor, str(form.get("delivery", "")))
        elif action == "delete":
            auto = svc.get_automation(actor, automation_id)
            svc.delete_automation(actor, automation_id)
            return registry_url(auto.registry) + "/automations"
        else:
            raise InvalidRequest(f"unknown action {action!r}")
        return url

    return apply(url, change, then=lambda target: target)
