"""The web UI (SPEC §6): server-rendered pages under ``/``, for people with a
browser; the REST API under ``/api/v1`` stays the programs' interface."""

from regalia.server.ui.pages import router

__all__ = ["router"]
