"""The web UI (SPEC §6, §8): server-rendered pages under ``/``, for people with
a browser; the REST API under ``/api/v1`` stays the programs' interface."""

from fastapi import APIRouter

from regalia.server.ui import automations, pages, registries, versions

router = APIRouter(include_in_schema=False)
for _module in (pages, registries, versions, automations):
    router.include_router(_module.router)

__all__ = ["router"]
