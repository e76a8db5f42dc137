"""Registry pages: a registry's collections, its settings (protected aliases,
members and roles, visibility, accepted types), and a collection's page
(its card, tags, versions and history)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from regalia.core.roles import RegistryRole, Visibility
from regalia.server.ui.common import PageActor, apply, at_least, checked_form, render, service_of
from regalia.server.ui.markdown import to_html

router = APIRouter(include_in_schema=False)
Form = Annotated[dict[str, Any], Depends(checked_form)]
VERSIONS_PER_PAGE = 50


def registry_url(name: str) -> str:
    return f"/registries/{quote(name, safe='')}"


def collection_url(registry: str, collection: str) -> str:
    return f"{registry_url(registry)}/collections/{quote(collection, safe='')}"


@router.get("/registries/{name}")
def registry_page(
    request: Request, name: str, actor: PageActor, cursor: str | None = None
) -> HTMLResponse:
    svc = service_of(request)
    reg = svc.get_registry(actor, name)
    page = svc.find_collections(
        actor, registry_filter={"name": reg.name}, order="name", cursor=cursor, limit=100
    )
    return render(request, "registry.html", actor, registry=reg, collections=page.items,
                  next_cursor=page.next_cursor)  # fmt: skip


@router.get("/registries/{name}/settings")
def settings_page(request: Request, name: str, actor: PageActor) -> HTMLResponse:
    svc = service_of(request)
    reg = svc.get_registry(actor, name)
    return render(request, "settings.html", actor, registry=reg,
                  members=svc.registry_members(actor, reg.name),
                  is_admin=at_least(reg.role, RegistryRole.ADMIN),
                  roles=[r.value for r in RegistryRole],
                  visibilities=[v.value for v in Visibility])  # fmt: skip


@router.post("/registries/{name}/settings/protected-aliases")
def protect(request: Request, name: str, actor: PageActor, form: Form) -> RedirectResponse:
    svc = service_of(request)
    aliases = [a.strip() for a in str(form.get("alias", "")).split(",") if a.strip()]
    url = registry_url(name) + "/settings"
    return apply(url, lambda: [svc.protect_alias(actor, name, a) for a in aliases])


@router.post("/registries/{name}/settings/protected-aliases/remove")
def unprotect(request: Request, name: str, actor: PageActor, form: Form) -> RedirectResponse:
    svc = service_of(request)
    url = registry_url(name) + "/settings"
    return apply(url, lambda: svc.unprotect_alias(actor, name, str(form.get("alias", ""))))


@router.post("/registries/{name}/settings/members")
def set_member(request: Request, name: str, actor: PageActor, form: Form) -> RedirectResponse:
    svc = service_of(request)
    who = str(form.get("principal", "")).strip()
    kind = str(form.get("kind", "user"))
    role = str(form.get("role", "")) or None
    url = registry_url(name) + "/settings"
    if kind == "team":
        return apply(url, lambda: svc.set_registry_role(actor, name, team=who, role=role))
    return apply(url, lambda: svc.set_registry_role(actor, name, user=who, role=role))


@router.post("/registries/{name}/settings/general")
def update_registry(request: Request, name: str, actor: PageActor, form: Form) -> RedirectResponse:
    svc = service_of(request)
    types = [t.strip() for t in str(form.get("types", "")).split(",") if t.strip()]
    url = registry_url(name) + "/settings"
    return apply(url, lambda: svc.update_registry(
        actor, name, description=str(form.get("description", "")),
        visibility=str(form.get("visibility", "")) or None,
        artifact_types=types or None, clear_artifact_types=not types))  # fmt: skip


@router.get("/registries/{name}/collections/{collection}")
def collection_page(
    request: Request, name: str, collection: str, actor: PageActor, cursor: str | None = None
) -> HTMLResponse:
    svc = service_of(request)
    reg = svc.get_registry(actor, name)
    coll = svc.get_collection(actor, reg.name, collection)
    versions = svc.find_versions(
        actor,
        registry_filter={"name": reg.name},
        collection_filter={"name": coll.name},
        order="-version",
        cursor=cursor,
        limit=VERSIONS_PER_PAGE,
    )
    history = svc.history(actor, reg.name, coll.name, limit=50).items
    return render(request, "collection.html", actor, registry=reg, collection=coll,
                  card=to_html(coll.description), versions=versions.items,
                  next_cursor=versions.next_cursor, history=history,
                  can_edit=at_least(reg.role, RegistryRole.MEMBER))  # fmt: skip


@router.post("/registries/{name}/collections/{collection}/card")
def edit_card(
    request: Request, name: str, collection: str, actor: PageActor, form: Form
) -> RedirectResponse:
    svc = service_of(request)
    add = [t.strip() for t in str(form.get("add_tags", "")).split(",") if t.strip()]
    remove = [t for t in [str(form.get("remove_tag", ""))] if t]
    description = form.get("description")
    return apply(collection_url(name, collection), lambda: svc.update_collection(
        actor, name, collection,
        description=str(description) if description is not None else None,
        add_tags=add, remove_tags=remove))  # fmt: skip
