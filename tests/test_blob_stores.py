"""Every blob store behaves alike (SPEC §7), the folder one and the S3 one
(against a real SeaweedFS); then what only the S3 store does: its key layout,
the checksums the bucket enforces, multipart uploads, ranged reads."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

import regalia.blobs.s3 as s3_module
from regalia.blobs import BlobStore, LocalBlobStore, S3BlobStore, open_blob_store
from regalia.blobs.base import StoredBlob
from regalia.blobs.s3 import make_s3_client
from regalia.errors import (
    FileChanged,
    FileMissing,
    IntegrityError,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
)

MiB = 1 << 20
PART = 5 * MiB  # the smallest part S3 accepts: a few MiB make a multipart upload


def payload(size: int, seed: int = 0) -> bytes:
    block = hashlib.sha256(f"seed {seed}".encode()).digest()
    return (block * (size // 32 + 1))[:size] if size < 64 else os.urandom(size)


def check_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


class Recorder:
    def __init__(self) -> None:
        self.total = 0

    def advance(self, n: int) -> None:
        self.total += n


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return S3BlobStore(bucket, "team/regalia", part_size=PART, tmp_dir=tmp_path / "spool")


@pytest.fixture
def s3(s3_bucket: str, tmp_path: Path) -> S3BlobStore:
    return S3BlobStore(s3_bucket, "p", part_size=PART, tmp_dir=tmp_path / "spool")


def objects(store: S3BlobStore) -> list[str]:
    """Every key in the store's bucket (not only under its prefix)."""
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def pending_uploads(store: S3BlobStore) -> list[str]:
    answer = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in answer.get("Uploads", ())]


def digests(store: BlobStore) -> list[str]:
    return sorted(b.digest for b in store.iter_blobs())


# -- the contract, on both stores -------------------------------------------------------
@pytest.mark.parametrize("size", [0, 10, 2 * PART + 123])
def test_put_file_stores_content_under_its_sha256(
    store: BlobStore, tmp_path: Path, size: int
) -> None:
    data = payload(size)
    blob = store.put_file(write(tmp_path / "model.bin", data))

    assert blob == StoredBlob(hashlib.sha256(data).hexdigest(), size, check_of(data))
    assert store.has(blob.digest) and store.size(blob.digest) == size
    with store.open(blob.digest) as f:
        assert f.read() == data
    assert [(b.digest, b.size) for b in store.iter_blobs()] == [(blob.digest, size)]


def test_same_content_is_stored_once(store: BlobStore, tmp_path: Path) -> None:
    data = payload(PART + 7)
    first = store.put_file(write(tmp_path / "a.bin", data))
    second = store.put_file(write(tmp_path / "b" / "copy.bin", data))
    third = store.put_stream(None, io.BytesIO(data))
    fourth = store.adopt(write(tmp_path / "received", data), first)

    assert first == second == third == fourth
    assert digests(store) == [first.digest]
    assert not (tmp_path / "received").exists()


def test_put_stream_checks_the_expected_digest(store: BlobStore) -> None:
    data = payload(2 * PART + 1, seed=1)
    digest = hashlib.sha256(data).hexdigest()
    assert store.put_stream(digest, io.BytesIO(data)) == (digest, len(data), check_of(data))
    with store.open(digest) as f:
        assert f.read() == data


def test_put_stream_with_a_wrong_digest_raises_and_keeps_nothing(
    store: BlobStore, tmp_path: Path
) -> None:
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(IntegrityError):
        store.put_stream(wrong, io.BytesIO(b"content"))
    assert digests(store) == []
    assert not any((tmp_path / "spool").glob("*"))


def test_adopt_takes_the_file_and_removes_it(store: BlobStore, tmp_path: Path) -> None:
    data = payload(2 * PART + 3, seed=2)
    blob = StoredBlob(hashlib.sha256(data).hexdigest(), len(data), check_of(data))
    path = write(tmp_path / "received.bin", data)
    assert store.adopt(path, blob) == blob
    assert not path.exists()
    with store.open(blob.digest) as f:
        assert f.read() == data


def test_missing_blob_raises_not_found(store: BlobStore) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has(digest)
    for call in (store.open, store.size):
        with pytest.raises(NotFound, match=digest):
            call(digest)


def test_delete_is_idempotent(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_file(write(tmp_path / "a.bin", b"data")).digest
    store.delete(digest)
    store.delete(digest)
    assert not store.has(digest) and digests(store) == []


@pytest.mark.parametrize("digest", ["", "abc", "A" * 64, "../" + "a" * 61])
def test_malformed_digest_is_rejected(store: BlobStore, digest: str) -> None:
    for call in (store.has, store.open, store.size, store.delete):
        with pytest.raises(InvalidRequest):
            call(digest)


def test_put_file_of_a_missing_file_raises_file_missing(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(FileMissing, match="nope.bin"):
        store.put_file(tmp_path / "nope.bin")


@pytest.mark.parametrize("size", [10, 2 * PART + 5])
def test_put_file_reports_progress_for_every_byte(
    store: BlobStore, tmp_path: Path, size: int
) -> None:
    sink = Recorder()
    store.put_file(write(tmp_path / "a.bin", payload(size)), progress=sink)
    assert sink.total == size


def test_open_seeks_and_reads_ranges(store: BlobStore, tmp_path: Path) -> None:
    data = payload(3 * MiB + 11, seed=3)
    digest = store.put_file(write(tmp_path / "a.bin", data)).digest
    with store.open(digest) as f:
        assert f.seekable()
        f.seek(MiB + 5)
        assert f.read(100) == data[MiB + 5 : MiB + 105]
        f.seek(-10, os.SEEK_END)
        assert f.read() == data[-10:]
        f.seek(3)
        assert f.read(4) == data[3:7] and f.tell() == 7
        assert f.read() == data[7:]


def test_iter_blobs_lists_every_blob_with_size_and_time(store: BlobStore, tmp_path: Path) -> None:
    blobs = [store.put_file(write(tmp_path / f"{i}.bin", payload(i * 1000))) for i in range(4)]
    listed = {b.digest: b for b in store.iter_blobs()}
    assert sorted(listed) == sorted(b.digest for b in blobs)
    assert all(listed[b.digest].size == b.size for b in blobs)
    assert all(listed[b.digest].modified > 1.7e9 for b in blobs)


# -- the S3 store -------------------------------------------------------------------------
def test_s3_keys_are_content_addressed_under_the_prefix(s3_bucket: str, tmp_path: Path) -> None:
    data = b"weights"
    digest = hashlib.sha256(data).hexdigest()
    for prefix, expected in [
        ("", f"blobs/{digest[:2]}/{digest[2:4]}/{digest}"),
        ("/a//b/", f"a/b/blobs/{digest[:2]}/{digest[2:4]}/{digest}"),
    ]:
        store = S3BlobStore(s3_bucket, prefix)
        assert store.key(digest) == expected
        store.put_file(write(tmp_path / "w.bin", data))
        assert expected in objects(store)
        assert store.local_path(digest) is None
    assert len(objects(store)) == 2  # one per prefix: stores under prefixes are apart


def test_s3_dedupe_stores_one_object(s3: S3BlobStore, tmp_path: Path) -> None:
    data = payload(PART + 1)
    s3.put_file(write(tmp_path / "a.bin", data))
    s3.put_file(write(tmp_path / "b.bin", data))
    s3.put_stream(None, io.BytesIO(data))
    assert objects(s3) == [s3.key(hashlib.sha256(data).hexdigest())]


def test_s3_multipart_upload_above_the_part_size(s3: S3BlobStore, tmp_path: Path) -> None:
    data = payload(3 * PART + 17)
    digest = s3.put_file(write(tmp_path / "big.bin", data)).digest
    head = s3.client.head_object(Bucket=s3.bucket, Key=s3.key(digest), PartNumber=1)
    assert head["PartsCount"] == 4 if "PartsCount" in head else head["ContentLength"] == PART
    with s3.open(digest) as f:
        assert hashlib.sha256(f.read()).hexdigest() == digest
    assert pending_uploads(s3) == []


def _rewrite(src: Path) -> None:
    src.write_bytes(bytes(b ^ 0xFF for b in src.read_bytes()))


def _append(src: Path) -> None:
    with src.open("ab") as f:
        f.write(b"more")


def _remove(src: Path) -> None:
    src.unlink()


@pytest.mark.parametrize("change", [_rewrite, _append, _remove])
@pytest.mark.parametrize("size", [100, 2 * PART + 9])
def test_s3_file_changed_after_hashing_raises_and_keeps_nothing(
    s3: S3BlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Path], None],
    size: int,
) -> None:
    src = write(tmp_path / "weights.bin", payload(size))
    real = S3BlobStore._hash

    def hash_then_change(self: S3BlobStore, fd: int, n: int) -> Any:
        done = real(self, fd, n)
        change(src)
        return done

    monkeypatch.setattr(S3BlobStore, "_hash", hash_then_change)
    with pytest.raises(FileChanged, match="weights.bin"):
        s3.put_file(src)
    assert objects(s3) == [] and pending_uploads(s3) == []


@pytest.mark.parametrize("size", [100, 2 * PART + 9])
def test_s3_bucket_refuses_bytes_that_changed_since_hashing(
    s3: S3BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """Even a change the file's stat does not show is caught: each request carries
    the SHA-256 of the bytes hashed, and the bucket refuses other bytes."""
    src = write(tmp_path / "weights.bin", payload(size))
    real = S3BlobStore._hash

    def hash_then_change(self: S3BlobStore, fd: int, n: int) -> Any:
        done = real(self, fd, n)
        with src.open("r+b") as f:  # same size, same inode, in place
            f.seek(n - 1)
            f.write(b"\x00" if payload(size)[-1:] != b"\x00" else b"\x01")
        return done

    monkeypatch.setattr(S3BlobStore, "_hash", hash_then_change)
    monkeypatch.setattr(s3_module, "_check_unchanged", lambda *a: None)
    with pytest.raises(FileChanged, match="weights.bin"):
        s3.put_file(src)
    assert objects(s3) == [] and pending_uploads(s3) == []


def test_s3_unreachable_endpoint_is_storage_unavailable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    store = S3BlobStore("bucket", client=make_s3_client("http://127.0.0.1:9"))
    digest = hashlib.sha256(b"x").hexdigest()
    calls: list[Callable[[], object]] = [
        lambda: store.has(digest),
        lambda: store.put_file(write(tmp_path / "a.bin", b"x")),
        lambda: store.put_stream(None, io.BytesIO(b"x")),
        lambda: list(store.iter_blobs()),
        lambda: store.delete(digest),
        store.check_bucket,
    ]
    for call in calls:
        with pytest.raises(StorageUnavailable, match="'bucket' at http://127.0.0.1:9"):
            call()


def test_s3_missing_bucket_is_named_at_the_check(s3: S3BlobStore) -> None:
    with pytest.raises(StorageUnavailable, match="'nosuchbucket' does not exist"):
        S3BlobStore("nosuchbucket", client=s3.client).check_bucket()
    s3.check_bucket()


def test_s3_presigned_get_downloads_without_credentials(s3: S3BlobStore, tmp_path: Path) -> None:
    import httpx

    blob = s3.put_file(write(tmp_path / "a.bin", b"presigned bytes"))
    url = s3.presigned_get(blob.digest, 60, filename="modèle.bin")
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"presigned bytes"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("s3://models/team/x", S3BlobStore),
        ("file:///srv/r", LocalBlobStore),
        ("/srv/r", LocalBlobStore),
    ],
)
def test_open_blob_store_by_url(url: str, kind: type, monkeypatch) -> None:
    monkeypatch.setenv("REGALIA_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    store = open_blob_store(url)
    assert isinstance(store, kind)
    if isinstance(store, S3BlobStore):
        assert (store.bucket, store.prefix, store.endpoint) == (
            "models",
            "team/x",
            "http://127.0.0.1:9",
        )


@pytest.mark.parametrize("url", ["gs://b/p", "s3://", "s3://ab", "http://x/y", ""])
def test_open_blob_store_refuses_other_urls(url: str) -> None:
    with pytest.raises(InvalidRequest):
        open_blob_store(url)


def test_settings_choose_the_store_blob_url_first(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regalia.config import Settings
    from regalia.service import Service

    monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGALIA_DATABASE_URL", raising=False)
    monkeypatch.setenv("REGALIA_BLOB_DIR", str(tmp_path / "folder"))
    monkeypatch.delenv("REGALIA_BLOB_URL", raising=False)
    folder = Service(Settings.from_env())
    assert isinstance(folder.blobs, LocalBlobStore) and folder.blobs.root == tmp_path / "folder"
    folder.close()

    monkeypatch.setenv("REGALIA_BLOB_URL", f"s3://{s3_bucket}/one")
    svc = Service(Settings.from_env())
    try:
        assert isinstance(svc.blobs, S3BlobStore)
        assert (svc.blobs.bucket, svc.blobs.prefix) == (s3_bucket, "one")
        svc.blobs.check_bucket()
        blob = svc.blobs.put_stream(None, io.BytesIO(b"through the settings"))
        assert svc.blobs.has(blob.digest)
        assert not (tmp_path / "folder" / "blobs").exists()
    finally:
        svc.close()
