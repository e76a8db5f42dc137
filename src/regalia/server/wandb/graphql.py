"""``POST /graphql``: the `wandb` client's GraphQL, over Regalia's service.

Queries are parsed, validated and executed by :mod:`.engine` against the SDL
in ``schema/`` and resolved from the caller's
:class:`~regalia.service.views.Actor`, in a worker thread, within the bounds of
:mod:`regalia.core.limits`. The client sends its API key as HTTP Basic
``api:KEY``. Every answer has GraphQL's shape (``{"data", "errors"}``),
failures included: a refused key is a 401 whose error message is Regalia's
own (which says why and what to run); a refusal of the registry (a role, a
protected alias, a missing version) carries Regalia's status (403, 404, 409,
400), which the client does not retry.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from regalia.config import Settings
from regalia.errors import InvalidRequest, RegaliaError
from regalia.server.auth import Authenticator
from regalia.server.wandb import (  # noqa: F401  (register their resolvers)
    identity,
    log,
    manage,
    reads,
    roots,
    runs,
)
from regalia.server.wandb.engine import run_query
from regalia.server.wandb.resolvers import WandbContext
from regalia.server.wandb.signing import signer_of
from regalia.service import Service

router = APIRouter(include_in_schema=False)


def failure(exc: RegaliaError) -> JSONResponse:
    """A Regalia error in GraphQL's shape, with its HTTP status and code."""
    error = {"message": exc.message, "extensions": {"code": exc.code, **exc.details}}
    return JSONResponse({"data": None, "errors": [error]}, status_code=exc.http_status)


def parse_request(raw: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    """(query, variables, operation name) of a GraphQL POST body."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequest("the GraphQL request body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise InvalidRequest("a GraphQL request is a JSON object with a 'query' string")
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise InvalidRequest("a GraphQL request's 'variables' is a JSON object")
    name = body.get("operationName")
    return body["query"], variables, name if isinstance(name, str) and name else None


def base_url(request: Request, settings: Settings) -> str:
    """The server's address for URLs handed to the client: ``REGALIA_PUBLIC_URL``
    if set (behind a proxy), else the address the client used."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


async def context_of(request: Request) -> WandbContext:
    """The request's caller (its API key checked) and what resolvers need."""
    auth: Authenticator = request.app.state.auth
    actor = await auth.actor(request)
    service: Service = request.app.state.service
    return WandbContext(
        actor=actor,
        service=service,
        settings=service.settings,
        base_url=base_url(request, service.settings),
        signer=signer_of(request),
        headers={k.lower(): v for k, v in request.headers.items()},
    )


@router.post("/graphql")
async def graphql_endpoint(request: Request) -> JSONResponse:
    try:
        ctx = await context_of(request)
        query, variables, operation = parse_request(await request.body())
        answer, cause = await run_in_threadpool(run_query, ctx, query, variables, operation)
    except RegaliaError as exc:
        return failure(exc)
    return JSONResponse(answer, status_code=cause.http_status if cause else 200)
