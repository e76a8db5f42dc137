"""Artifact versions: resolve, log, link, aliases, tags, unlink, delete, lineage.

Writes a client may retry (log, link, alias changes, unlink) accept an
``Idempotency-Key`` header: a retry with the same key returns the first
result and changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse

from regalia.server.deps import Caller, Svc, out
from regalia.server.jsonbody import StrictJsonRoute
from regalia.server.params import ArtifactPath, Id
from regalia.server.responses import Deleted, Lineage, RunKey, Unlinked
from regalia.server.schemas import AliasChange, NewLink, NewRun, NewVersion, Use, VersionChange
from regalia.service.views import FileEntry, VersionView

router = APIRouter(tags=["versions"], route_class=StrictJsonRoute)
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="a client-chosen key: a retried request with it changes nothing again",
    ),
]
MembershipId = Annotated[Id, Path(description="the id of a version in a collection")]


@router.get(
    "/resolve",
    summary="Resolve a registry or source path (`...:alias`) to a version",
    response_model=VersionView,
)
def resolve(actor: Caller, svc: Svc, path: Annotated[ArtifactPath, Query()]) -> JSONResponse:
    return out(svc.resolve(actor, path))


@router.post("/runs", status_code=201, summary="Start a run (lineage)", response_model=RunKey)
def start_run(body: NewRun, actor: Caller, svc: Svc) -> JSONResponse:
    key = svc.start_run(actor, body.entity, body.project, body.run_key, body.job_type)
    return out({"run_key": key}, 201)


@router.post(
    "/versions",
    status_code=201,
    summary="Log a version of a source artifact",
    response_model=VersionView,
    responses={200: {"model": VersionView, "description": "identical content (R10)"}},
)
def log_version(
    body: NewVersion, actor: Caller, svc: Svc, idempotency_key: IdemKey = None
) -> JSONResponse:
    # The service checks every file's content is one the caller may reference
    # (SPEC §7) and confirms its size and check against the store.
    files = [FileEntry(f.path, f.digest, f.size, f.check) for f in body.files]
    view = svc.log_version(
        actor,
        entity=body.entity,
        project=body.project,
        name=body.name,
        type=body.type,
        files=files,
        description=body.description,
        metadata=body.metadata,
        aliases=body.aliases,
        tags=body.tags,
        run_key=body.run_key,
        idempotency_key=idempotency_key,
    )
    return out(view, 201 if view.created else 200)


@router.get(
    "/versions/{membership_id}",
    summary="One version (as seen through its collection)",
    response_model=VersionView,
)
def get_version(membership_id: MembershipId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.get_version(actor, membership_id))


@router.patch(
    "/versions/{membership_id}",
    summary="Edit description, metadata, tags (R8)",
    response_model=VersionView,
)
def update_version(
    membership_id: MembershipId, body: VersionChange, actor: Caller, svc: Svc
) -> JSONResponse:
    view = svc.update_version(
        actor,
        membership_id,
        description=body.description,
        metadata=body.metadata,
        add_tags=body.add_tags,
        remove_tags=body.remove_tags,
    )
    return out(view)


@router.delete(
    "/versions/{membership_id}", summary="Delete a source version (R9)", response_model=Deleted
)
def delete_version(membership_id: MembershipId, actor: Caller, svc: Svc) -> JSONResponse:
    svc.delete_version(actor, membership_id)
    return out({"deleted": membership_id})


@router.post(
    "/versions/{membership_id}/links",
    status_code=201,
    summary="Link into a registry collection (R1-R3)",
    response_model=VersionView,
    responses={200: {"model": VersionView, "description": "linked already (R3)"}},
)
def link(
    membership_id: MembershipId,
    body: NewLink,
    actor: Caller,
    svc: Svc,
    idempotency_key: IdemKey = None,
) -> JSONResponse:
    view = svc.link(
        actor, membership_id, body.target, body.aliases, idempotency_key=idempotency_key
    )
    return out(view, 201 if view.created else 200)


@router.post(
    "/versions/{membership_id}/unlink",
    summary="Unlink from its collection (R9)",
    response_model=Unlinked,
)
def unlink(
    membership_id: MembershipId, actor: Caller, svc: Svc, idempotency_key: IdemKey = None
) -> JSONResponse:
    svc.unlink(actor, membership_id, idempotency_key=idempotency_key)
    return out({"unlinked": membership_id})


@router.post(
    "/versions/{membership_id}/aliases",
    summary="Add, remove or set aliases (R5, R7)",
    response_model=VersionView,
)
def change_aliases(
    membership_id: MembershipId,
    body: AliasChange,
    actor: Caller,
    svc: Svc,
    idempotency_key: IdemKey = None,
) -> JSONResponse:
    view = svc.change_aliases(
        actor,
        membership_id,
        add=body.add,
        remove=body.remove,
        exactly=body.exactly,
        idempotency_key=idempotency_key,
    )
    return out(view)


@router.get(
    "/versions/{membership_id}/source",
    summary="The source version behind a link",
    response_model=VersionView,
)
def source_of(membership_id: MembershipId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.source_of(actor, membership_id))


@router.get(
    "/versions/{membership_id}/links",
    summary="Where this version is linked",
    response_model=list[VersionView],
)
def links_of(membership_id: MembershipId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.links_of(actor, membership_id))


@router.get(
    "/versions/{membership_id}/files",
    summary="The manifest (needs download rights)",
    response_model=list[FileEntry],
)
def files(membership_id: MembershipId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.files(actor, membership_id))


@router.get(
    "/versions/{membership_id}/lineage",
    summary="The run that logged it, runs that used it",
    response_model=Lineage,
)
def lineage(membership_id: MembershipId, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.lineage(actor, membership_id))


@router.post(
    "/versions/{membership_id}/uses",
    summary="Record that a run used this version",
    response_model=VersionView,
)
def use(membership_id: MembershipId, body: Use, actor: Caller, svc: Svc) -> JSONResponse:
    return out(svc.use(actor, membership_id, body.run_key))
