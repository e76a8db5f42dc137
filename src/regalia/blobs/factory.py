"""Open the blob store a URL names (``REGALIA_BLOB_URL``).

* ``s3://BUCKET`` or ``s3://BUCKET/PREFIX``: an :class:`~regalia.blobs.s3.S3BlobStore`.
  The endpoint is ``REGALIA_S3_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL``, else
  AWS itself; region and credentials come from the standard AWS chain
  (environment, ``~/.aws`` profiles, instance roles).
* ``file:///PATH`` or a plain path: a :class:`~regalia.blobs.local.LocalBlobStore`.

Example::

    store = open_blob_store("s3://models/regalia")
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from regalia.blobs.base import BlobStore
from regalia.blobs.local import LocalBlobStore
from regalia.errors import InvalidRequest


def open_blob_store(url: str, *, tmp_dir: Path | None = None) -> BlobStore:
    """The blob store ``url`` names.

    Args:
        url: ``s3://BUCKET/PREFIX``, ``file:///PATH`` or a plain folder path.
        tmp_dir: where an S3 store spools streamed uploads (default: the
            system's temporary folder).

    Raises:
        InvalidRequest: ``url`` is not one of those forms.
    """
    text = (url or "").strip()
    if not text:
        raise InvalidRequest("REGALIA_BLOB_URL is empty: give s3://BUCKET/PREFIX or a folder")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        from regalia.blobs.s3 import S3BlobStore, make_s3_client

        bucket = parts.netloc
        if len(bucket) < 3 or parts.query or parts.fragment:
            raise InvalidRequest(
                f"invalid blob store URL {text!r}: expected s3://BUCKET/PREFIX "
                "(a bucket name of at least 3 characters, no query)",
                url=text,
            )
        return S3BlobStore(
            bucket,
            unquote(parts.path),
            client=make_s3_client(),
            tmp_dir=tmp_dir,
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidRequest(f"a file: blob store URL names no host: {text!r}", url=text)
        return LocalBlobStore(Path(unquote(parts.path)))
    if scheme == "" or (len(scheme) == 1 and text[1:2] == ":"):  # a path (or C:\...)
        return LocalBlobStore(Path(text).expanduser())
    raise InvalidRequest(
        f"unsupported blob store URL {text!r}: use s3://BUCKET/PREFIX, file:///PATH "
        "or a folder path",
        url=text,
    )
