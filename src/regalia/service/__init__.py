"""The service layer: the only writer of Regalia's metadata and blobs."""

from __future__ import annotations

from regalia.service.admin import AdminMixin
from regalia.service.history import HistoryMixin
from regalia.service.search import SearchMixin
from regalia.service.transfer import TransferMixin
from regalia.service.views import Actor


class Service(AdminMixin, TransferMixin, HistoryMixin, SearchMixin):
    """Every use case of Regalia; each method takes the acting :class:`Actor` first."""


__all__ = ["Actor", "Service"]
