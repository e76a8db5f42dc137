"""The OpenAPI document, told truthfully.

FastAPI derives the document from the routes, but it cannot know what this
server answers when something goes wrong: it lists 422 for every validation
failure (this server answers 400 ``invalid_request``) and none of the errors
the service raises. :func:`truthful` rewrites the derived document once, by
rule, so no route has to list them by hand:

- 400 for every operation with parameters or a body (validation, names);
- 401 and 503 (the metadata database or blob store failed) for every
  authenticated operation; 403 for those that check a role (all but a few
  that only show the caller what it may see, :data:`NO_ROLE_NEEDED`);
- 404 where the path names something (or the query does, ``/resolve``);
- 409 for creates of named things, retried writes (an ``Idempotency-Key``
  used for another request, a type mismatch) and deleting a version whose
  link holds a protected alias (:data:`CONFLICTS`); 413 for operations with
  a body (the JSON limit, the size of an upload);
- every error with the envelope ``{"error": {"code", "message", "details"}}``
  (the ``Error`` component) and the codes it may carry, from ``errors.py``.

Routes add what the rules cannot know with FastAPI's ``responses=`` (extra
success codes, 206/416 of downloads); an error status they list gets the
envelope too. Schemas of the service's views are marked exact: every field is
always sent and no other (``to_jsonable`` sends exactly the dataclass fields).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from regalia.errors import ERRORS_BY_CODE, ServerUnreachable
from regalia.service import views

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error answer: a stable code (clients rebuild the error class "
    "from it), a message for people, and details (e.g. the rule a name broke).",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "stable, e.g. 'invalid_name'"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
TITLES = {
    400: "Bad request: a parameter, body or name is invalid",
    401: (
        "No valid API key (none sent, or refused: then details.reason says why: "
        "'unknown' (no such key here), 'revoked' (with details.revoked_at), "
        "'other_server' (a key of another store: "
        "details.key_tag and details.server_tag) or 'malformed' (not a Regalia key))"
    ),
    403: "The caller's role does not allow this (the message names the role needed)",
    404: "Not found, or not visible to the caller",
    409: "Conflicts with the current state",
    413: "The body is too large",
    416: "The requested range is outside the content",
    503: "The metadata database or the blob store is unavailable; retry later",
}
# Codes a server sends that are not an error class (the validation of FastAPI
# and Starlette's own errors).
EXTRA_CODES = {400: ["invalid_request"], 413: ["too_large"]}
# Authenticated operations that check no role: they show the caller itself,
# or only what it may see.
NO_ROLE_NEEDED = {
    ("get", "/api/v1/viewer"),
    ("post", "/api/v1/viewer/api-keys"),
    ("get", "/api/v1/viewer/api-keys"),
    ("delete", "/api/v1/api-keys/{prefix}"),  # it searches only the keys the caller may revoke
    ("get", "/api/v1/registries"),
    ("get", "/api/v1/users"),
    ("get", "/api/v1/search"),
    ("post", "/api/v1/search/registries"),
    ("post", "/api/v1/search/collections"),
    ("post", "/api/v1/search/versions"),
    ("post", "/api/v1/blobs/missing"),
}
# Operations that answer 409 besides those taking an Idempotency-Key
# (whose key may have served another request, and which link or log with a
# type the collection does not hold).
CONFLICTS = {
    ("post", "/api/v1/users"),  # the name is taken
    ("post", "/api/v1/teams"),
    # demoting or removing a team's last admin
    ("post", "/api/v1/teams/{team}/members"),
    ("put", "/api/v1/teams/{team}/members/{user}"),
    ("delete", "/api/v1/teams/{team}/members/{user}"),
    ("post", "/api/v1/registries"),
    ("post", "/api/v1/registries/{name}/automations"),
    ("delete", "/api/v1/versions/{membership_id}"),  # a link holds a protected alias (R7)
    ("delete", "/api/v1/api-keys/{prefix}"),  # the key is revoked already
}
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Operations that name what they look up outside their path.
NAMES_IN_QUERY = {("get", "/api/v1/resolve")}


def install(app: FastAPI) -> None:
    """Serve :func:`truthful` of the derived document at ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            derived = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = truthful(derived)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_codes(status: int) -> list[str]:
    """The error codes the server may send with ``status``."""
    codes = {
        cls.code
        for cls in ERRORS_BY_CODE.values()
        if cls.http_status == status and cls is not ServerUnreachable
    }
    codes.update(EXTRA_CODES.get(status, []))
    return sorted(codes)


def error_response(status: int) -> dict[str, Any]:
    codes = ", ".join(error_codes(status))
    description = TITLES.get(status, "Error")
    if codes:
        description += f" (codes: {codes})"
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation can answer, by the rules of this module."""
    statuses: set[int] = set()
    params = operation.get("parameters") or []
    body = "requestBody" in operation
    if params or body:
        statuses.add(400)
    if operation.get("security"):
        statuses |= {401, 503}
        if (method, path) not in NO_ROLE_NEEDED:
            statuses.add(403)
        retried = any(p.get("name") == IDEMPOTENCY_HEADER for p in params)
        if retried or (method, path) in CONFLICTS:
            statuses.add(409)
    if any(p.get("in") == "path" for p in params) or (method, path) in NAMES_IN_QUERY:
        statuses.add(404)
    if body:
        statuses.add(413)
    return statuses


def truthful(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (as FastAPI derived it) with the statuses this server really
    answers, the error envelope, and exact schemas of the service's views."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Error"] = ERROR_SCHEMA
    view_names = {
        name for name, obj in vars(views).items() if isinstance(obj, type) and _is_dataclass(obj)
    }
    for name, schema in schemas.items():
        if name in view_names and "properties" in schema:
            schema["required"] = sorted(schema["properties"])
            schema["additionalProperties"] = False
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code in error_statuses(method, path, operation):
                responses.setdefault(str(code), error_response(code))
            for status, response in responses.items():
                if int(status) >= 400 and "content" not in response:
                    response.update(error_response(int(status)))
            operation["responses"] = dict(sorted(responses.items()))
    return doc


def _is_dataclass(obj: type) -> bool:
    return dataclasses.is_dataclass(obj)
