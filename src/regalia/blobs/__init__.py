"""Content-addressed blob stores: the contract and the local-folder backend.

Example::

    from regalia.blobs import LocalBlobStore

    store = LocalBlobStore(Path("/srv/regalia"))
    digest, size = store.put_file(Path("model.bin"))
"""

from __future__ import annotations

from regalia.blobs.base import BlobStore, ProgressSink, copy_and_hash, validate_digest
from regalia.blobs.local import LocalBlobStore

__all__ = ["BlobStore", "LocalBlobStore", "ProgressSink", "copy_and_hash", "validate_digest"]
