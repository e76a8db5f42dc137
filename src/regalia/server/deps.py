"""What every route shares: the caller, the service, and JSON out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBearer

from regalia.errors import InvalidRequest
from regalia.server.auth import Authenticator
from regalia.server.jsonbody import json_response
from regalia.service import Actor, Service
from regalia.service.views import to_jsonable

# Declared for the OpenAPI document (the "Authorize" button of /docs); the
# Authenticator reads the header itself.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_basic = HTTPBasic(auto_error=False, description="user 'api', password: the API key")


async def current_actor(
    request: Request,
    _b: Annotated[Any, Depends(_bearer)] = None,
    _c: Annotated[Any, Depends(_basic)] = None,
) -> Actor:
    auth: Authenticator = request.app.state.auth
    return await auth.actor(request)


# async: a plain function dependency would cost a trip through the thread pool.
async def service_of(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


Caller = Annotated[Actor, Depends(current_actor)]
Svc = Annotated[Service, Depends(service_of)]


def out(obj: Any, status: int = 200) -> JSONResponse:
    """``obj`` (views, lists, dicts) as a JSON response; never invalid JSON."""
    return json_response(to_jsonable(obj), status)


async def clean_url(request: Request) -> None:
    """Refuse a NUL character (U+0000) in the path or query: PostgreSQL cannot
    store or compare text holding one, and no name or id holds one."""
    scope = request.scope
    if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
        raise InvalidRequest(
            "the URL holds a NUL character (%00), which names and parameters may not hold"
        )
