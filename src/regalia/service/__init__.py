"""The service layer: the only writer of Regalia's metadata and blobs.

``Service`` is imported on first use, so that a program using only the views
(the SDK talking to a server) does not load the database layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from regalia.service.views import Actor

if TYPE_CHECKING:
    from regalia.service.usecases import Service


def __getattr__(name: str) -> Any:
    if name == "Service":
        from regalia.service.usecases import Service

        return Service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Actor", "Service"]
