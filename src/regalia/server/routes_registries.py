"""Registries, their members, protected aliases, collections, history and search."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from regalia.server.deps import Caller, Svc, out
from regalia.server.jsonbody import StrictJsonRoute
from regalia.server.params import AliasRef, ArtifactName, RegistryName
from regalia.server.responses import (
    AliasAt,
    CollectionPage,
    Deleted,
    HistoryPage,
    ProtectedAliases,
    RegistryPage,
    VersionPage,
)
from regalia.server.schemas import (
    CollectionChange,
    NewRegistry,
    ProtectedAliasAdd,
    RegistryChange,
    RoleAssignment,
    Search,
)
from regalia.service.views import CollectionView, MemberView, RegistryView, SearchResults

router = APIRouter(route_class=StrictJsonRoute)
REG: list[str | Enum] = ["registries"]


@router.get(
    "/registries",
    tags=REG,
    summary="Registries the caller may see",
    response_model=list[RegistryView],
)
def list_registries(actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.list_registries(actor))


@router.post(
    "/registries",
    tags=REG,
    status_code=201,
    summary="Create a registry",
    response_model=RegistryView,
)
def create_registry(body: NewRegistry, actor: Caller, svc: Svc) -> JSONResponse:
    view = svc.create_registry(
        actor,
        body.name,
        visibility=body.visibility,
        description=body.description,
        artifact_types=body.artifact_types,
        exist_ok=body.exist_ok,
    )
    return out(view, 201)


@router.get("/registries/{name}", tags=REG, summary="One registry", response_model=RegistryView)
def get_registry(name: RegistryName, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.get_registry(actor, name))


@router.patch(
    "/registries/{name}",
    tags=REG,
    summary="Change description, visibility, types",
    response_model=RegistryView,
)
def update_registry(
    name: RegistryName, body: RegistryChange, actor: Caller, svc: Svc
) -> JSONResponse:
    view = svc.update_registry(
        actor,
        name,
        description=body.description,
        visibility=body.visibility,
        artifact_types=body.artifact_types,
        clear_artifact_types=body.clear_artifact_types,
    )
    return out(view)


@router.delete(
    "/registries/{name}", tags=REG, summary="Delete a registry (admin)", response_model=Deleted
)
def delete_registry(name: RegistryName, actor: Caller, svc: Svc) -> JSONResponse:
    svc.delete_registry(actor, name)
    return out({"deleted": name})


@router.get(
    "/registries/{name}/members",
    tags=REG,
    summary="Members and their roles",
    response_model=list[MemberView],
)
def members(name: RegistryName, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.registry_members(actor, name))


@router.put(
    "/registries/{name}/members",
    tags=REG,
    summary="Give, change or remove a role",
    response_model=list[MemberView],
)
def set_member(name: RegistryName, body: RoleAssignment, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.set_registry_role(actor, name, user=body.user, team=body.team, role=body.role))


@router.post(
    "/registries/{name}/protected-aliases",
    tags=REG,
    summary="Protect an alias (R7)",
    response_model=ProtectedAliases,
)
def protect(name: RegistryName, body: ProtectedAliasAdd, actor: Caller, svc: Svc) -> JSONResponse:
    return out({"protected_aliases": svc.protect_alias(actor, name, body.alias)})


@router.delete(
    "/registries/{name}/protected-aliases/{alias}",
    tags=REG,
    summary="Unprotect an alias",
    response_model=ProtectedAliases,
)
def unprotect(name: RegistryName, alias: AliasRef, actor: Caller, svc: Svc) -> JSONResponse:
    return out({"protected_aliases": svc.unprotect_alias(actor, name, alias)})


@router.get(
    "/registries/{name}/history",
    tags=REG,
    summary="History (R11), newest first",
    response_model=HistoryPage,
)
def history(
    name: RegistryName,
    actor: Caller,
    svc: Svc,
    collection: ArtifactName | None = None,
    alias: AliasRef | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> JSONResponse:
    return out(svc.history(actor, name, collection, alias=alias, limit=limit, cursor=cursor))


COLL: list[str | Enum] = ["collections"]


@router.get(
    "/registries/{name}/collections/{collection}",
    tags=COLL,
    summary="One collection",
    response_model=CollectionView,
)
def get_collection(
    name: RegistryName, collection: ArtifactName, actor: Caller, svc: Svc
) -> JSONResponse:
    return out(svc.get_collection(actor, name, collection))


@router.patch(
    "/registries/{name}/collections/{collection}",
    tags=COLL,
    summary="Edit card and tags",
    response_model=CollectionView,
)
def update_collection(
    name: RegistryName, collection: ArtifactName, body: CollectionChange, actor: Caller, svc: Svc
) -> JSONResponse:
    view = svc.update_collection(
        actor,
        name,
        collection,
        description=body.description,
        add_tags=body.add_tags,
        remove_tags=body.remove_tags,
    )
    return out(view)


@router.delete(
    "/registries/{name}/collections/{collection}",
    tags=COLL,
    summary="Delete",
    response_model=Deleted,
)
def delete_collection(
    name: RegistryName, collection: ArtifactName, actor: Caller, svc: Svc
) -> JSONResponse:
    svc.delete_collection(actor, name, collection)
    return out({"deleted": collection})


@router.get(
    "/registries/{name}/collections/{collection}/aliases/{alias}/at",
    tags=COLL,
    summary="Which version held an alias at a time (R11)",
    response_model=AliasAt,
)
def alias_at(
    name: RegistryName,
    collection: ArtifactName,
    alias: AliasRef,
    when: datetime,
    actor: Caller,
    svc: Svc,
) -> JSONResponse:
    return out({"index": svc.alias_at(actor, name, collection, alias, when)})


SEARCH: list[str | Enum] = ["search"]


def _order(body: Search, default: str) -> str | None:
    """The body's order if it sent one (null included), else the default."""
    return body.order if "order" in body.model_fields_set else default


@router.post(
    "/search/registries",
    tags=SEARCH,
    summary="Filter registries (Mongo operators)",
    response_model=RegistryPage,
)
def find_registries(body: Search, actor: Caller, svc: Svc) -> JSONResponse:
    page = svc.find_registries(
        actor, filter=body.filter, order=_order(body, "name"), cursor=body.cursor, limit=body.limit
    )
    return out(page)


@router.post(
    "/search/collections",
    tags=SEARCH,
    summary="Filter collections",
    response_model=CollectionPage,
)
def find_collections(body: Search, actor: Caller, svc: Svc) -> JSONResponse:
    page = svc.find_collections(
        actor,
        registry_filter=body.registry_filter,
        filter=body.filter,
        order=_order(body, "name"),
        cursor=body.cursor,
        limit=body.limit,
    )
    return out(page)


@router.post(
    "/search/versions",
    tags=SEARCH,
    summary="Filter linked versions",
    response_model=VersionPage,
)
def find_versions(body: Search, actor: Caller, svc: Svc) -> JSONResponse:
    page = svc.find_versions(
        actor,
        registry_filter=body.registry_filter,
        collection_filter=body.collection_filter,
        filter=body.filter,
        order=_order(body, "-created_at"),
        cursor=body.cursor,
        limit=body.limit,
    )
    return out(page)


@router.get(
    "/search",
    tags=SEARCH,
    summary="The search box: registries, collections, versions",
    response_model=SearchResults,
)
def search_box(
    actor: Caller,
    svc: Svc,
    q: str = Query(..., max_length=200),
    limit: int = Query(20, ge=1, le=100),
) -> JSONResponse:
    return out(svc.search(actor, q, limit=limit))
