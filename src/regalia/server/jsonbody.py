"""Strict JSON in and out of the REST API.

FastAPI reads request bodies with Python's :func:`json.loads`, which accepts
``NaN``, ``Infinity`` and ``-Infinity``; every API route is a
:class:`StrictJsonRoute`, whose request reads them as errors (400 naming the
key, e.g. ``body['metadata']['loss'] is NaN: JSON has no NaN or Infinity``),
and refuses text holding U+0000 or a lone surrogate, which the databases
cannot store and a response could not carry.

:func:`json_response` never answers with invalid JSON: a value stored by an
older version (a NaN in a version's metadata on SQLite) is sent as ``null``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from regalia.core.jsonvalues import NotJson, loads_strict, validate_json
from regalia.errors import InvalidRequest

LOG = logging.getLogger("regalia.server")
# Escapes that may spell U+0000 or half of a surrogate pair: only bodies holding
# one are walked string by string.
_SUSPECT_ESCAPES = (b"\\u0000", b"\\ud", b"\\uD")


class StrictJsonRequest(Request):
    """A request whose :meth:`json` accepts JSON only."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                value = loads_strict(body, "body")
                if any(e in body for e in _SUSPECT_ESCAPES):
                    validate_json(value, "body")
            except (NotJson, InvalidRequest) as exc:
                # FastAPI answers a JSONDecodeError as a validation error (400 here).
                raise json.JSONDecodeError(str(exc), body.decode("utf-8", "replace"), 0) from None
            self._json = value
        return self._json


class StrictJsonRoute(APIRoute):
    """An API route that reads its body with :class:`StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict


def json_safe(value: Any) -> Any:
    """``value`` with what JSON cannot carry replaced: NaN and infinities by
    ``None``, lone surrogates by U+FFFD."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if value.isascii():
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {json_safe(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def json_response(data: Any, status: int = 200) -> JSONResponse:
    """A JSON response of ``data`` (already JSON-ready); values JSON cannot carry,
    stored before they were refused, go as ``null`` (see :func:`json_safe`)."""
    try:
        return JSONResponse(data, status_code=status)
    except ValueError:  # NaN, Infinity (allow_nan=False), or a lone surrogate (UnicodeError)
        LOG.warning("a response held values JSON cannot carry; they were sent as null")
        return JSONResponse(json_safe(data), status_code=status)
