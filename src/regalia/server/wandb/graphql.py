"""``POST /graphql``: the `wandb` client's GraphQL, over Regalia's service.

Queries are parsed and validated by graphql-core against ``schema.graphql``
(the SDL Regalia keeps; introspection answers from it truthfully) and resolved
from the caller's :class:`~regalia.service.views.Actor`, in a worker thread,
within the bounds of :mod:`regalia.core.limits` (tokens parsed, fields
resolved): a query past one is a 400 naming it. The client sends its
API key as HTTP Basic ``api:KEY``. Every answer has GraphQL's shape
(``{"data", "errors"}``), failures included: a refused key is a 401 whose
error message is Regalia's own (which says why and what to run); the client
does not retry a 401 or a 400.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    build_schema,
    execute,
    parse,
    validate,
)
from starlette.concurrency import run_in_threadpool

from regalia.core.limits import MAX_GRAPHQL_FIELDS, MAX_GRAPHQL_TOKENS
from regalia.errors import InvalidRequest, RegaliaError
from regalia.server.auth import Authenticator
from regalia.service.views import Actor

router = APIRouter(include_in_schema=False)


@cache
def schema() -> GraphQLSchema:
    """The SDL Regalia answers (built once)."""
    return build_schema(files(__package__).joinpath("schema.graphql").read_text("utf-8"))


def viewer(actor: Actor) -> dict[str, Any]:
    """The caller as W&B's ``User``: its entity is the user's own name."""
    return {
        "id": f"user:{actor.user_id}",
        "name": actor.name,
        "username": actor.name,
        "email": None,
        "entity": actor.name,
        "admin": actor.is_org_admin,
        "flags": json.dumps({}),
        "deletedAt": None,
        "teams": {"edges": [{"node": {"id": f"team:{n}", "name": n}} for n in actor.team_names]},
        "apiKeys": {"edges": []},
    }


def root(actor: Actor) -> dict[str, Any]:
    # No server features advertised yet: the client then takes its plain paths.
    return {"viewer": viewer(actor), "serverInfo": {"features": []}}


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


class FieldBudget:
    """graphql-core middleware: refuses the fields after the first
    :data:`MAX_GRAPHQL_FIELDS` of one request (their parents become null, so
    the rest of the query is cut off at once)."""

    def __init__(self) -> None:
        self.used = 0

    @property
    def spent(self) -> bool:
        return self.used > MAX_GRAPHQL_FIELDS

    def resolve(self, next_: Any, root_value: Any, info: Any, **args: Any) -> Any:
        self.used += 1
        if self.spent:
            raise GraphQLError("field budget spent")
        return next_(root_value, info, **args)


def run_query(
    actor: Actor, query: str, variables: dict[str, Any] | None, operation: str | None
) -> dict[str, Any]:
    """The GraphQL answer to one request (``{"data", "errors"}``).

    Raises:
        InvalidRequest: the query is past a limit of :mod:`regalia.core.limits`.
    """
    try:
        document = parse(query, max_tokens=MAX_GRAPHQL_TOKENS)
    except GraphQLError as exc:
        if "tokens" in exc.message:
            raise InvalidRequest(
                f"the GraphQL query has more than {MAX_GRAPHQL_TOKENS} tokens",
                limit="graphql_tokens",
                maximum=MAX_GRAPHQL_TOKENS,
            ) from None
        return dict(ExecutionResult(None, [exc]).formatted)
    problems = validate(schema(), document)
    if problems:
        return dict(ExecutionResult(None, problems).formatted)
    budget = FieldBudget()
    result = execute(
        schema(),
        document,
        root_value=root(actor),
        variable_values=variables,
        operation_name=operation,
        middleware=[budget],
    )
    assert isinstance(result, ExecutionResult)  # every resolver here is synchronous
    if budget.spent:
        raise InvalidRequest(
            f"the GraphQL query resolves more than {MAX_GRAPHQL_FIELDS} fields",
            limit="graphql_fields",
            maximum=MAX_GRAPHQL_FIELDS,
        )
    return dict(result.formatted)


@router.post("/graphql")
async def graphql_endpoint(request: Request) -> JSONResponse:
    auth: Authenticator = request.app.state.auth
    try:
        actor = await auth.actor(request)
        query, variables, operation = parse_request(await request.body())
        answer = await run_in_threadpool(run_query, actor, query, variables, operation)
    except RegaliaError as exc:
        return failure(exc)
    return JSONResponse(answer)
