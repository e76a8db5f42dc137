"""A version's page: files (with download links), metadata, description,
tags, lineage, the Aliases field (+ to add, × to remove) and the usage snippet."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from regalia.core.names import REGISTRY_PREFIX
from regalia.core.roles import RegistryRole
from regalia.errors import RegaliaError
from regalia.server.routes_blobs import blob_response
from regalia.server.ui.common import PageActor, apply, at_least, checked_form, render, service_of
from regalia.server.ui.markdown import to_html
from regalia.server.ui.registries import collection_url
from regalia.service import Actor, Service
from regalia.service.views import VersionView

router = APIRouter(include_in_schema=False)
Form = Annotated[dict[str, Any], Depends(checked_form)]


def _version(svc: Service, actor: Actor, registry: str, collection: str, ref: str) -> VersionView:
    return svc.resolve(actor, f"{REGISTRY_PREFIX}{registry}/{collection}:{ref}")


@router.get("/registries/{name}/collections/{collection}/{ref}")
def version_page(
    request: Request, name: str, collection: str, ref: str, actor: PageActor
) -> HTMLResponse:
    svc = service_of(request)
    reg = svc.get_registry(actor, name)
    v = _version(svc, actor, reg.name, collection, ref)
    try:
        files = svc.files(actor, v.membership_id)
    except RegaliaError:  # may see, may not download (restricted viewer)
        files = None
    is_admin = at_least(reg.role, RegistryRole.ADMIN)
    return render(request, "version.html", actor, registry=reg, v=v, files=files,
                  description=to_html(v.description), lineage=svc.lineage(actor, v.membership_id),
                  can_edit=at_least(reg.role, RegistryRole.MEMBER), is_admin=is_admin,
                  base=f"{collection_url(reg.name, collection)}/v{v.index}",
                  snippet=f'api.artifact("{v.qualified_name}")')  # fmt: skip


@router.post("/registries/{name}/collections/{collection}/{ref}/aliases")
def add_aliases(
    request: Request, name: str, collection: str, ref: str, actor: PageActor, form: Form
) -> RedirectResponse:
    """The + of the Aliases field: one or more aliases, comma-separated."""
    svc = service_of(request)
    url = f"{collection_url(name, collection)}/{ref}"
    aliases = [a.strip() for a in str(form.get("alias", "")).split(",") if a.strip()]
    return apply(url, lambda: svc.add_aliases(
        actor, _version(svc, actor, name, collection, ref).membership_id, aliases))  # fmt: skip


@router.post("/registries/{name}/collections/{collection}/{ref}/aliases/remove")
def remove_alias(
    request: Request, name: str, collection: str, ref: str, actor: PageActor, form: Form
) -> RedirectResponse:
    """The × of an alias chip."""
    svc = service_of(request)
    url = f"{collection_url(name, collection)}/{ref}"
    alias = str(form.get("alias", ""))
    return apply(url, lambda: svc.remove_aliases(
        actor, _version(svc, actor, name, collection, ref).membership_id, [alias]))  # fmt: skip


@router.post("/registries/{name}/collections/{collection}/{ref}/unlink")
def unlink(
    request: Request, name: str, collection: str, ref: str, actor: PageActor, form: Form
) -> RedirectResponse:
    """Take the version out of the collection (its source version stays)."""
    svc = service_of(request)
    return apply(
        f"{collection_url(name, collection)}/{ref}",
        lambda: svc.unlink(actor, _version(svc, actor, name, collection, ref).membership_id),
        then=lambda _: collection_url(name, collection),
    )


@router.get("/registries/{name}/collections/{collection}/{ref}/files/{digest}")
async def download(
    request: Request, name: str, collection: str, ref: str, digest: str, actor: PageActor
) -> Response:
    svc = service_of(request)
    v = await run_in_threadpool(_version, svc, actor, name, collection, ref)
    entry = await run_in_threadpool(svc.blob_for_download, actor, v.membership_id, digest)
    filename = entry.path.rsplit("/", 1)[-1]
    response = await run_in_threadpool(blob_response, svc, entry.digest, filename)
    if response.status_code == 200:  # not a redirect to the bucket (which names it itself)
        response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
    return response
