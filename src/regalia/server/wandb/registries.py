"""Registries as the `wandb` client sees them: ``Api().registries(filter=...)``,
its ``.collections()`` and ``.versions()``, ``Api().registry(name)`` with its
``save()`` and ``delete()``, and ``Api().create_registry(...)``.

A registry is the project ``wandb-registry-<name>`` of the organization's
entity (``organization(name).orgEntity``); its listings are that entity's
``projects``, ``artifactCollections`` and ``artifactMemberships``, answered by
the service's searches (:meth:`~regalia.service.search.SearchMixin.find_registries`
and the others), so they show only what the caller may see (a restricted
registry is invisible to a non-member) and take W&B's Mongo-style filters
(SPEC §6). The client prefixes registry names in its filters with
``wandb-registry-``; Regalia's registry names have no prefix, so it is taken
off here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from regalia.core.names import REGISTRY_PREFIX, name_key
from regalia.errors import (
    AlreadyExists,
    InvalidFilter,
    InvalidRequest,
    OrganizationNotFound,
    RegistryNotFound,
)
from regalia.server.wandb.identity import entity_of_name, organization_of
from regalia.server.wandb.ids import decode_id, encode_id
from regalia.server.wandb.objects import (
    alias_of,
    collection_of,
    membership_of,
    project_of,
    timestamp,
)
from regalia.server.wandb.resolvers import WandbContext, context, field, mutation, query
from regalia.service.views import Page, RegistryView

MAX_PAGE = 100
# W&B's registry access levels <-> Regalia's visibilities.
ACCESS = {"PRIVATE": "organization", "RESTRICTED": "restricted"}
VISIBILITY = {v: k for k, v in ACCESS.items()}


def registry_project(ctx: WandbContext, reg: RegistryView) -> dict[str, Any]:
    """A registry as W&B's ``Project`` of the org entity (``RegistryFragment``)."""
    org = ctx.actor.org_name
    out = project_of(org, reg.full_name)
    types = reg.artifact_types or []
    out.update(
        {
            "entity": {**entity_of_name(org), "organization": organization_of(ctx)},
            "description": reg.description,
            "createdAt": timestamp(reg.created_at),
            "updatedAt": timestamp(reg.updated_at),
            "access": VISIBILITY.get(reg.visibility, "PRIVATE"),
            "allowAllArtifactTypesInRegistry": reg.artifact_types is None,
            "artifactTypes": lambda info, **_: {
                "edges": [{"node": {"id": encode_id("ArtifactType", t), "name": t}} for t in types]
            },
        }
    )
    return out


def is_org_entity(ctx: WandbContext, entity: dict[str, Any]) -> bool:
    return name_key(entity["name"]) == name_key(ctx.actor.org_name)


# -- filters ---------------------------------------------------------------------------


def _json(value: Any, what: str) -> dict[str, Any] | None:
    """A JSONString filter argument as a dict (None or ``{}``: everything)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidFilter(f"{what} is not JSON") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidFilter(f"{what} is a JSON object such as {{'name': 'model'}}")
    return value


def _unprefixed(operand: Any) -> Any:
    """A registry-name operand without the client's ``wandb-registry-`` prefix
    (in a ``$regex``, only an anchored one: ``^wandb-registry-mod`` -> ``^mod``)."""
    if isinstance(operand, str):
        return operand.removeprefix(REGISTRY_PREFIX)
    if isinstance(operand, list):
        return [_unprefixed(v) for v in operand]
    if isinstance(operand, dict):
        out: dict[str, Any] = {}
        for op, v in operand.items():
            if op == "$regex" and isinstance(v, str):
                out[op] = (
                    "^" + v[len("^" + REGISTRY_PREFIX) :]
                    if v.startswith("^" + REGISTRY_PREFIX)
                    else v
                )
            elif op == "$options":
                out[op] = v
            else:
                out[op] = _unprefixed(v)
        return out
    return operand


def registry_filter(value: Any, what: str = "the registry filter") -> dict[str, Any] | None:
    """A W&B registry filter in Regalia's terms: names lose their prefix."""
    raw = _json(value, what)

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, v in node.items():
            if key in ("$and", "$or", "$nor", "$not"):
                out[key] = walk(v)
            elif key == "name":
                out[key] = _unprefixed(v)
            else:
                out[key] = v
        return out

    return walk(raw) if raw else None


def _page(first: int | None) -> int:
    if first is None:
        return MAX_PAGE
    if first < 1:
        raise InvalidRequest("first is at least 1")
    return min(first, MAX_PAGE)


def _connection(page: Page, node: Callable[[Any], Any]) -> dict[str, Any]:
    return {
        "pageInfo": {
            "endCursor": page.next_cursor,
            "hasNextPage": page.next_cursor is not None,
            "startCursor": None,
            "hasPreviousPage": False,
        },
        "edges": [{"cursor": None, "node": node(item)} for item in page.items],
    }


def _order(order: str | None, default: str) -> str:
    return order or default


# -- roots and fields --------------------------------------------------------------------


@query("organization")
def organization(info: Any, name: str | None = None, **_: Any) -> dict[str, Any]:
    """Regalia's one organization (the client names it to reach its registries)."""
    ctx = context(info)
    org = ctx.actor.org_name
    if name and name_key(name) != name_key(org):
        raise OrganizationNotFound(
            f"organization {name!r} not found: this server's organization is {org!r}",
            organization=name,
        )
    return organization_of(ctx)


@field("Entity", "project")
def entity_project(
    obj: dict[str, Any], info: Any, name: str | None = None, **_: Any
) -> dict[str, Any] | None:
    """``entity(org).project("wandb-registry-X")``: the registry X (``Api().registry``);
    null when there is none the caller may see. Other projects: ``entity/name``."""
    ctx = context(info)
    if not name:
        return None
    if not name.startswith(REGISTRY_PREFIX):
        return project_of(obj["name"], name)
    if not is_org_entity(ctx, obj):
        return None
    try:
        reg = ctx.service.get_registry(ctx.actor, name[len(REGISTRY_PREFIX) :])
    except RegistryNotFound:
        return None
    return registry_project(ctx, reg)


@field("Entity", "projects")
def entity_projects(
    obj: dict[str, Any],
    info: Any,
    filters: Any = None,
    after: str | None = None,
    first: int | None = None,
    order: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The registries the caller may see that match ``filters`` (``Api().registries``)."""
    ctx = context(info)
    if not is_org_entity(ctx, obj):
        return {"pageInfo": {"hasNextPage": False, "hasPreviousPage": False}, "edges": []}
    page = ctx.service.find_registries(
        ctx.actor,
        filter=registry_filter(filters),
        order=_order(order, "name"),
        cursor=after,
        limit=_page(first),
    )
    return _connection(page, lambda reg: registry_project(ctx, reg))


@field("Entity", "artifactCollections")
def entity_artifact_collections(
    obj: dict[str, Any],
    info: Any,
    projectFilters: Any = None,  # noqa: N803
    filters: Any = None,
    after: str | None = None,
    first: int | None = None,
    order: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Collections of the matching registries that match ``filters``
    (``registries().collections()``)."""
    ctx = context(info)
    if not is_org_entity(ctx, obj):
        return {
            "totalCount": 0,
            "pageInfo": {"hasNextPage": False, "hasPreviousPage": False},
            "edges": [],
        }
    reg_filter = registry_filter(projectFilters)
    coll_filter = _json(filters, "the collection filter")
    ordered = _order(order, "name")

    def find(cursor: str | None, limit: int) -> Page:
        return ctx.service.find_collections(
            ctx.actor,
            registry_filter=reg_filter,
            filter=coll_filter,
            order=ordered,
            cursor=cursor,
            limit=limit,
        )

    def total(info: Any, **_: Any) -> int:
        count, cursor = 0, None
        while True:
            page = find(cursor, MAX_PAGE)
            count += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return count

    out = _connection(find(after, _page(first)), lambda c: collection_of(ctx, c))
    out["totalCount"] = total
    return out


@field("Entity", "artifactMemberships")
def entity_artifact_memberships(
    obj: dict[str, Any],
    info: Any,
    projectFilters: Any = None,  # noqa: N803
    collectionFilters: Any = None,  # noqa: N803
    filters: Any = None,
    after: str | None = None,
    first: int | None = None,
    order: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """Linked versions of the matching registries and collections that match
    ``filters`` (``registries().versions()``, ``collections().versions()``)."""
    ctx = context(info)
    if not is_org_entity(ctx, obj):
        return {"pageInfo": {"hasNextPage": False, "hasPreviousPage": False}, "edges": []}
    page = ctx.service.find_versions(
        ctx.actor,
        registry_filter=registry_filter(projectFilters),
        collection_filter=_json(collectionFilters, "the collection filter"),
        filter=_json(filters, "the version filter"),
        order=_order(order, "-created_at"),
        cursor=after,
        limit=_page(first),
    )

    def node(view: Any) -> dict[str, Any]:
        return membership_of(ctx, view, ctx.service.source_of(ctx.actor, view.membership_id))

    return _connection(page, node)


def _collection_aliases(obj: dict[str, Any], info: Any, **_: Any) -> dict[str, Any]:
    """The aliases held in a registry collection, version by version (a source
    artifact's: none listed)."""
    ctx = context(info)
    edges: list[dict[str, Any]] = []
    project = obj["project"]["name"]
    if obj["__typename"] == "ArtifactPortfolio" and project.startswith(REGISTRY_PREFIX):
        cursor = None
        while True:
            page = ctx.service.find_versions(
                ctx.actor,
                registry_filter={"name": project[len(REGISTRY_PREFIX) :]},
                collection_filter={"name": obj["name"]},
                cursor=cursor,
                limit=MAX_PAGE,
            )
            for v in page.items:
                edges += [{"cursor": None, "node": alias_of(ctx, v, a)} for a in v.aliases]
            cursor = page.next_cursor
            if cursor is None:
                break
    return {"pageInfo": {"hasNextPage": False, "hasPreviousPage": False}, "edges": edges}


field("ArtifactPortfolio", "aliases")(_collection_aliases)
field("ArtifactSequence", "aliases")(_collection_aliases)


# -- creating (and updating) a registry ------------------------------------------------------


@mutation("upsertModel")
def upsert_model(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``Api().create_registry(name, visibility, description, artifact_types)``:
    service.create_registry (org role member or admin; the creator becomes the
    registry's admin). A registry that exists is updated (``registry.save()``)."""
    ctx = context(info)
    full = input.get("name") or ""
    if not full.startswith(REGISTRY_PREFIX):
        raise InvalidRequest(
            f"Regalia keeps registries only: a project name is {REGISTRY_PREFIX}<registry>, "
            f"not {full!r}"
        )
    entity = input.get("entityName")
    if entity and name_key(entity) != name_key(ctx.actor.org_name):
        raise InvalidRequest(
            f"registries live in the organization's entity {ctx.actor.org_name!r}, not {entity!r}"
        )
    name = full[len(REGISTRY_PREFIX) :]
    access = input.get("access")
    visibility = None
    if access is not None:
        visibility = ACCESS.get(access)
        if visibility is None:
            raise InvalidRequest(
                f"unknown registry access {access!r}; use PRIVATE (organization) or RESTRICTED"
            )
    types = [t["name"] for t in input.get("artifactTypes") or ()]
    artifact_types = None if input.get("allowAllArtifactTypesInRegistry") or not types else types
    description = input.get("description")
    try:
        reg = ctx.service.create_registry(
            ctx.actor,
            name,
            visibility=visibility or "organization",
            description=description or "",
            artifact_types=artifact_types,
        )
        inserted = True
    except AlreadyExists as taken:
        try:
            current = ctx.service.get_registry(ctx.actor, name)
        except RegistryNotFound:
            raise taken from None  # by a registry the caller may not see
        reg = _update(ctx, current, input, description, visibility, types)
        inserted = False
    return {
        "inserted": inserted,
        "project": registry_project(ctx, reg),
        "clientMutationId": input.get("clientMutationId"),
    }


def _update(
    ctx: WandbContext,
    current: RegistryView,
    input: dict[str, Any],  # noqa: A002
    description: str | None,
    visibility: str | None,
    new_types: list[str],
) -> RegistryView:
    """``registry.save()``: only what differs is changed (the client sends every
    attribute; a visibility or type change needs the registry's admin, a
    description its members). Types are only added (W&B's rule: saved types stay);
    ``allowAllArtifactTypesInRegistry`` true lifts the restriction."""
    allow_all = input.get("allowAllArtifactTypesInRegistry")
    types: list[str] | None = None
    clear = False
    if allow_all and current.artifact_types is not None:
        clear = True
    elif new_types or (allow_all is False and current.artifact_types is None):
        merged = list(dict.fromkeys([*(current.artifact_types or []), *new_types]))
        if merged != (current.artifact_types or []):
            types = merged
    if (
        (description is None or description == current.description)
        and (visibility is None or visibility == current.visibility)
        and types is None
        and not clear
    ):
        return current
    return ctx.service.update_registry(
        ctx.actor,
        current.name,
        description=description if description != current.description else None,
        visibility=visibility if visibility != current.visibility else None,
        artifact_types=types,
        clear_artifact_types=clear,
    )


@mutation("deleteModel")
def delete_model(info: Any, input: dict[str, Any]) -> dict[str, Any]:  # noqa: A002
    """``registry.delete()``: service.delete_registry (its admins; the core
    registries stay). ``id`` is the registry's project id."""
    ctx = context(info)
    key = decode_id(input["id"], "Project")
    entity, _, project = key.partition("/")
    if name_key(entity) != name_key(ctx.actor.org_name) or not project.startswith(REGISTRY_PREFIX):
        raise InvalidRequest("Regalia deletes registries only, not other projects")
    ctx.service.delete_registry(ctx.actor, project[len(REGISTRY_PREFIX) :])
    return {"success": True, "clientMutationId": input.get("clientMutationId")}
