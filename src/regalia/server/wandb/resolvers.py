"""How the W&B GraphQL modules plug in: each registers its root fields with
:func:`query` and :func:`mutation`; every resolver receives the request's
:class:`WandbContext` as ``info.context``.

Objects are answered as plain dicts shaped like the SDL's types (a dict that
stands for an interface or union carries ``"__typename"``); a field whose
value needs arguments or more work is a callable ``fn(info, **args)`` in the
dict, which graphql-core's default resolver calls only when the query asks
for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regalia.config import Settings
from regalia.service import Actor, Service

Resolver = Callable[..., Any]

QUERY: dict[str, Resolver] = {}
MUTATION: dict[str, Resolver] = {}


@dataclass
class WandbContext:
    """One GraphQL request: who asks, through which service, at which address."""

    actor: Actor
    service: Service
    settings: Settings
    base_url: str  # the server's address as the client reached it, without a trailing /
    signer: Any  # regalia.server.wandb.signing.UrlSigner
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    undeclared: list[str] = dataclasses.field(default_factory=list)  # "Type.field" answered null

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def query(name: str) -> Callable[[Resolver], Resolver]:
    """Register ``fn(info, **args)`` as the resolver of ``Query.<name>``."""

    def register(fn: Resolver) -> Resolver:
        if name in QUERY:
            raise RuntimeError(f"Query.{name} is registered twice")
        QUERY[name] = fn
        return fn

    return register


def mutation(name: str) -> Callable[[Resolver], Resolver]:
    """Register ``fn(info, **args)`` as the resolver of ``Mutation.<name>``."""

    def register(fn: Resolver) -> Resolver:
        if name in MUTATION:
            raise RuntimeError(f"Mutation.{name} is registered twice")
        MUTATION[name] = fn
        return fn

    return register


def context(info: Any) -> WandbContext:
    ctx = info.context
    assert isinstance(ctx, WandbContext)
    return ctx


# Fields of shared object types that a module resolves itself (they need
# arguments or a query of their own): objects.py adds them to every dict of
# that type it builds.
FIELDS: dict[str, dict[str, Resolver]] = {}


def field(type_name: str, name: str) -> Callable[[Resolver], Resolver]:
    """Register ``fn(obj, info, **args)`` as the resolver of ``<type_name>.<name>``
    on the dicts :mod:`.objects` builds (``obj`` is that dict)."""

    def register(fn: Resolver) -> Resolver:
        fields = FIELDS.setdefault(type_name, {})
        if name in fields:
            raise RuntimeError(f"{type_name}.{name} is registered twice")
        fields[name] = fn
        return fn

    return register


def with_fields(type_name: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with the registered fields of ``type_name`` bound to it."""
    for name, fn in FIELDS.get(type_name, {}).items():
        obj[name] = _bound(fn, obj)
    return obj


def _bound(fn: Resolver, obj: dict[str, Any]) -> Resolver:
    return lambda info, **args: fn(obj, info, **args)
