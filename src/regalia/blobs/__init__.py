"""Content-addressed blob stores: the contract, a local folder, an S3 bucket.

Example::

    from regalia.blobs import LocalBlobStore, open_blob_store

    store = LocalBlobStore(Path("/srv/regalia"))
    blob = store.put_file(Path("model.bin"))  # StoredBlob(digest, size, check)
    bucket = open_blob_store("s3://models/regalia")  # an S3BlobStore
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
from regalia.blobs.factory import open_blob_store
from regalia.blobs.local import LocalBlobStore
from regalia.blobs.s3 import S3BlobStore

__all__ = [
    "BlobStore",
    "LocalBlobStore",
    "ProgressSink",
    "S3BlobStore",
    "StoredBlob",
    "copy_and_hash",
    "open_blob_store",
    "validate_check",
    "validate_digest",
]
