"""Identities: the caller, users, service accounts, teams and API keys; and the
store's garbage collection (org admins)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from regalia.core.apikeys import PREFIX_LENGTH
from regalia.server.deps import Caller, Svc, out
from regalia.server.jsonbody import StrictJsonRoute
from regalia.server.params import EntityName
from regalia.server.responses import ApiKey, NewUserOut, Revoked
from regalia.server.schemas import (
    GcRequest,
    NewTeam,
    NewUser,
    OrgRoleChange,
    TeamMemberAdd,
    TeamRoleChange,
)
from regalia.service.views import Actor, GcReport, KeyView, TeamView, UserView

router = APIRouter(tags=["identities"], route_class=StrictJsonRoute)
KeyPrefix = Annotated[
    str,
    Path(
        min_length=1,
        max_length=PREFIX_LENGTH,
        description="the first characters of the key, as the key listings show them",
    ),
]


def _forget_keys(request: Request) -> None:
    request.app.state.auth.forget()


@router.get("/viewer", summary="Who the API key belongs to", response_model=Actor)
def viewer(actor: Caller) -> JSONResponse:
    return out(actor)


@router.post(
    "/viewer/api-keys",
    status_code=201,
    summary="A new API key for the caller (shown once)",
    response_model=ApiKey,
)
def new_own_key(actor: Caller, svc: Svc) -> JSONResponse:
    return out({"api_key": svc.create_api_key(actor)}, 201)


@router.get(
    "/viewer/api-keys",
    summary="The caller's API keys (their first characters only), revoked ones too",
    response_model=list[KeyView],
)
def own_keys(actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.list_api_keys(actor))


@router.delete(
    "/api-keys/{prefix}",
    summary="Revoke the one active API key starting with these characters "
    "(your own; org admins: any in the organization)",
    response_model=KeyView,
)
def revoke_key(prefix: KeyPrefix, actor: Caller, svc: Svc, request: Request) -> JSONResponse:
    view = svc.revoke_api_key(actor, prefix)
    _forget_keys(request)
    return out(view)


@router.get(
    "/users",
    summary="Users and service accounts of the organization",
    response_model=list[UserView],
)
def users(actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.list_users(actor))


@router.post(
    "/users",
    status_code=201,
    summary="Create a user or service account (org admin)",
    response_model=NewUserOut,
)
def create_user(body: NewUser, actor: Caller, svc: Svc) -> JSONResponse:
    user, key = svc.create_user(
        actor,
        body.name,
        org_role=body.org_role,
        service_account=body.service_account,
        exist_ok=body.exist_ok,
    )
    return out({"user": user, "api_key": key}, 201)


@router.put(
    "/users/{name}/org-role",
    summary="Change a user's org role (org admin)",
    response_model=UserView,
)
def set_org_role(
    name: EntityName, body: OrgRoleChange, actor: Caller, svc: Svc, request: Request
) -> JSONResponse:
    user = svc.set_org_role(actor, name, body.org_role)
    _forget_keys(request)
    return out(user)


@router.post(
    "/users/{name}/api-keys",
    status_code=201,
    summary="A new API key for a user (shown once)",
    response_model=ApiKey,
)
def new_key(name: EntityName, actor: Caller, svc: Svc) -> JSONResponse:
    return out({"api_key": svc.create_api_key(actor, name)}, 201)


@router.get(
    "/users/{name}/api-keys",
    summary="A user's API keys (yours, or any user's for org admins)",
    response_model=list[KeyView],
)
def user_keys(name: EntityName, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.list_api_keys(actor, name))


@router.delete(
    "/users/{name}/api-keys", summary="Revoke every API key of a user", response_model=Revoked
)
def revoke_keys(name: EntityName, actor: Caller, svc: Svc, request: Request) -> JSONResponse:
    revoked = svc.revoke_api_keys(actor, name)
    _forget_keys(request)
    return out({"revoked": revoked})


@router.get(
    "/teams",
    summary="Teams of the organization, with members and team roles",
    response_model=list[TeamView],
)
def teams(actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.list_teams(actor))


@router.post(
    "/teams",
    status_code=201,
    summary="Create a team (you become its admin)",
    response_model=TeamView,
)
def create_team(body: NewTeam, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.create_team(actor, body.name, exist_ok=body.exist_ok), 201)


@router.get(
    "/teams/{team}", summary="One team, with members and team roles", response_model=TeamView
)
def team(team: EntityName, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.get_team(actor, team))


# Team changes hand out or take away the team's registry roles: each forgets the
# remembered keys, so the change applies to this process's next request at once.
@router.post(
    "/teams/{team}/members",
    summary="Add a user to a team (org or team admin)",
    response_model=TeamView,
)
def add_team_member(
    team: EntityName, body: TeamMemberAdd, actor: Caller, svc: Svc, request: Request
) -> JSONResponse:
    view = svc.add_team_member(actor, team, body.user, role=body.role)
    _forget_keys(request)
    return out(view)


@router.put(
    "/teams/{team}/members/{user}",
    summary="Change a member's team role (org or team admin)",
    response_model=TeamView,
)
def set_team_role(
    team: EntityName,
    user: EntityName,
    body: TeamRoleChange,
    actor: Caller,
    svc: Svc,
    request: Request,
) -> JSONResponse:
    view = svc.set_team_role(actor, team, user, body.role)
    _forget_keys(request)
    return out(view)


@router.delete(
    "/teams/{team}/members/{user}",
    summary="Remove a member (org or team admin; or leave)",
    response_model=TeamView,
)
def remove_team_member(
    team: EntityName, user: EntityName, actor: Caller, svc: Svc, request: Request
) -> JSONResponse:
    view = svc.remove_team_member(actor, team, user)
    _forget_keys(request)
    return out(view)


@router.post(
    "/admin/gc",
    summary="Free stored contents no version references (org admins)",
    response_model=GcReport,
    tags=["admin"],
)
def collect_garbage(body: GcRequest, actor: Caller, svc: Svc) -> JSONResponse:
    """Garbage collection (``regalia gc``): contents nothing references, unused
    for the grace period, are deleted from the store; safe beside uploads and
    commits in flight on any server."""
    return out(
        svc.collect_garbage(actor, grace=timedelta(seconds=body.grace_s), dry_run=body.dry_run)
    )
