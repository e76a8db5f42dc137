"""Content-addressed blob stores: the contract and the local-folder backend.

Example::

    from regalia.blobs import LocalBlobStore

    store = LocalBlobStore(Path("/srv/regalia"))
    blob = store.put_file(Path("model.bin"))  # StoredBlob(digest, size, check)
"""

from __future__ import annotations

from regalia.blobs.base import (
    BlobStore,
    ProgressSink,
    StoredBlob,
    copy_and_hash,
    validate_check,
    validate_digest,
)
from regalia.blobs.local import LocalBlobStore

__all__ = [
    "BlobStore",
    "LocalBlobStore",
    "ProgressSink",
    "StoredBlob",
    "copy_and_hash",
    "validate_check",
    "validate_digest",
]
