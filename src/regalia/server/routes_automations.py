"""Automations (SPEC §5): create, list, enable or disable, delete, test; their
deliveries, each try of one, and redelivery."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from regalia.server.deps import Caller, Svc, out
from regalia.server.jsonbody import StrictJsonRoute
from regalia.server.params import Id, RegistryName
from regalia.server.responses import Deleted
from regalia.server.schemas import AutomationChange, NewAutomation
from regalia.service.views import AttemptView, AutomationView, DeliveryView

DeliveryId = Annotated[
    str,
    Field(json_schema_extra={"pattern": "^[0-9a-f]{32}$", "description": "a delivery's id"}),
]

router = APIRouter(route_class=StrictJsonRoute)
TAGS: list[str | Enum] = ["automations"]


@router.get(
    "/registries/{name}/automations",
    tags=TAGS,
    summary="A registry's automations",
    response_model=list[AutomationView],
)
def list_automations(name: RegistryName, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.automations(actor, name))


@router.post(
    "/registries/{name}/automations",
    tags=TAGS,
    status_code=201,
    summary="Create an automation (members and admins)",
    response_model=AutomationView,
)
def create_automation(
    name: RegistryName, body: NewAutomation, actor: Caller, svc: Svc
) -> JSONResponse:
    view = svc.create_automation(
        actor,
        registry=name,
        name=body.name,
        event=body.event,
        action=body.action,
        target=body.target,
        collection=body.collection,
        filter_kind=body.filter_kind,
        filter_value=body.filter_value,
        access_token=body.access_token,
        signing_secret=body.signing_secret,
        secrets=body.secrets,
        payload_template=body.payload_template,
        description=body.description,
        enabled=body.enabled,
    )
    return out(view, 201)


@router.get(
    "/automations/{automation_id}",
    tags=TAGS,
    summary="One automation",
    response_model=AutomationView,
)
def get_automation(automation_id: Id, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.get_automation(actor, automation_id))


@router.patch(
    "/automations/{automation_id}",
    tags=TAGS,
    summary="Enable or disable",
    response_model=AutomationView,
)
def change_automation(
    automation_id: Id, body: AutomationChange, actor: Caller, svc: Svc
) -> JSONResponse:
    return out(svc.set_automation_enabled(actor, automation_id, body.enabled))


@router.delete(
    "/automations/{automation_id}",
    tags=TAGS,
    summary="Delete an automation",
    response_model=Deleted,
)
def delete_automation(automation_id: Id, actor: Caller, svc: Svc) -> JSONResponse:
    svc.delete_automation(actor, automation_id)
    return out({"deleted": automation_id})


@router.post(
    "/automations/{automation_id}/test",
    tags=TAGS,
    status_code=202,
    summary="Queue a sample event (sent even when disabled)",
    response_model=DeliveryView,
)
def test_automation(automation_id: Id, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.test_automation(actor, automation_id), 202)


@router.get(
    "/automations/{automation_id}/deliveries",
    tags=TAGS,
    summary="Deliveries, newest first",
    response_model=list[DeliveryView],
)
def deliveries(
    automation_id: Id, actor: Caller, svc: Svc, limit: int = Query(100, ge=1, le=1000)
) -> JSONResponse:
    return out(svc.deliveries(actor, automation_id, limit=limit))


@router.get(
    "/deliveries/{delivery_id}", tags=TAGS, summary="One delivery", response_model=DeliveryView
)
def get_delivery(delivery_id: DeliveryId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.get_delivery(actor, delivery_id))


@router.get(
    "/deliveries/{delivery_id}/attempts",
    tags=TAGS,
    summary="Each try of a delivery",
    response_model=list[AttemptView],
)
def delivery_attempts(delivery_id: DeliveryId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.delivery_attempts(actor, delivery_id))


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    tags=TAGS,
    status_code=202,
    summary="Send the event again, as a new delivery",
    response_model=DeliveryView,
)
def redeliver(delivery_id: DeliveryId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.redeliver(actor, delivery_id), 202)
