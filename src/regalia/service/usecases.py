"""The :class:`Service`: every use case, assembled from the mixins."""

from __future__ import annotations

from regalia.service.admin import AdminMixin
from regalia.service.delivery import DeliveryMixin
from regalia.service.direct import DirectTransferMixin
from regalia.service.gc import GcMixin
from regalia.service.history import HistoryMixin
from regalia.service.lookups import LookupsMixin
from regalia.service.runs import RunsMixin
from regalia.service.search import SearchMixin
from regalia.service.sessions import SessionMixin
from regalia.service.transfer import TransferMixin
from regalia.service.wandb_uploads import WandbUploadsMixin


class Service(
    WandbUploadsMixin,
    AdminMixin,
    RunsMixin,
    LookupsMixin,
    DirectTransferMixin,
    TransferMixin,
    HistoryMixin,
    SearchMixin,
    DeliveryMixin,
    SessionMixin,
    GcMixin,
):
    """Every use case of Regalia; each method takes the acting :class:`Actor` first."""
