"""The local blob store (SPEC §7): content stored once by SHA-256, atomically,
with a BLAKE3 check of the same bytes for downloads to verify."""

from __future__ import annotations

import errno
import hashlib
import io
import mmap
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

import regalia.blobs.base as base_module
import regalia.blobs.local as local_module
from regalia.blobs import BlobStore, LocalBlobStore, StoredBlob, validate_check
from regalia.blobs.base import (
    SMALL_FILE,
    Copied,
    ProgressSink,
    StreamHasher,
    copy_and_hash,
    kernel_copy,
)
from regalia.errors import FileChanged, FileMissing, IntegrityError, InvalidRequest, NotFound

BIG = 3 * SMALL_FILE + 123  # above SMALL_FILE: copied and hashed by two threads


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes."""
    return b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(size // 32 + 1))[
        :size
    ]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def check_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class Recorder:
    """A progress sink that remembers what it was told."""

    def __init__(self) -> None:
        self.total = 0

    def advance(self, n: int) -> None:
        self.total += n


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")


def test_local_store_implements_the_blob_store_contract(store: LocalBlobStore) -> None:
    assert isinstance(store, BlobStore)
    sink: ProgressSink = Recorder()
    assert sink is not None


@pytest.mark.parametrize("size", [0, 10, BIG])
def test_put_file_stores_content_under_its_sha256(
    store: LocalBlobStore, tmp_path: Path, size: int
) -> None:
    data = payload(size)
    blob = store.put_file(write(tmp_path / "model.bin", data))
    digest = blob.digest

    assert isinstance(blob, StoredBlob)
    assert blob == (hashlib.sha256(data).hexdigest(), size, check_of(data))
    assert store.has(digest) and store.size(digest) == size
    with store.open(digest) as f:
        assert f.read() == data
    path = store.local_path(digest)
    assert path == tmp_path / "store" / "blobs" / digest[:2] / digest[2:4] / digest
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_same_content_is_stored_once(store: LocalBlobStore, tmp_path: Path) -> None:
    data = payload(BIG)
    first = store.put_file(write(tmp_path / "a.bin", data))
    second = store.put_file(write(tmp_path / "b" / "copy.bin", data))
    third = store.put_stream(None, io.BytesIO(data))

    assert first == second == third == (hashlib.sha256(data).hexdigest(), BIG, check_of(data))
    assert len(files_under(tmp_path / "store" / "blobs")) == 1
    assert files_under(tmp_path / "store" / "tmp") == []


def test_put_file_leaves_no_temporary_file(store: LocalBlobStore, tmp_path: Path) -> None:
    store.put_file(write(tmp_path / "a.bin", payload(BIG)))
    store.put_file(write(tmp_path / "b.bin", b"small"))

    assert files_under(tmp_path / "store" / "tmp") == []
    assert len(files_under(tmp_path / "store")) == 2


def test_put_file_of_a_missing_file_raises_file_missing(
    store: LocalBlobStore, tmp_path: Path
) -> None:
    with pytest.raises(FileMissing, match="nope.bin"):
        store.put_file(tmp_path / "nope.bin")


def test_put_file_of_a_folder_is_rejected(store: LocalBlobStore, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(InvalidRequest, match="not a regular file"):
        store.put_file(tmp_path / "folder")


def _append(src: Path) -> None:
    with src.open("ab") as f:
        f.write(b"more")


def _rewrite_same_size(src: Path) -> None:
    # Same size; the mtime is moved explicitly so the test does not depend on
    # the clock ticking between the write and the check.
    before = src.stat()
    src.write_bytes(bytes(b ^ 0xFF for b in src.read_bytes()))
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))


def _replace(src: Path) -> None:
    tmp = src.with_suffix(".new")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, src)


def _remove(src: Path) -> None:
    src.unlink()


@pytest.mark.parametrize("change", [_append, _rewrite_same_size, _replace, _remove])
@pytest.mark.parametrize("size", [100, BIG])
def test_file_changed_during_put_raises_and_keeps_nothing(
    store: LocalBlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Path], None],
    size: int,
) -> None:
    src = write(tmp_path / "weights.bin", payload(size))

    def copy_then_change(
        src_fd: int,
        dst_fd: int,
        size: int,
        *,
        progress: ProgressSink | None = None,
        fsync: bool = False,
        sha256: bool = True,
        check: bool = False,
    ) -> Copied:
        result = copy_and_hash(
            src_fd, dst_fd, size, progress=progress, fsync=fsync, sha256=sha256, check=check
        )
        change(src)
        return result

    monkeypatch.setattr(local_module, "copy_and_hash", copy_then_change)

    with pytest.raises(FileChanged, match="weights.bin"):
        store.put_file(src)
    assert files_under(tmp_path / "store") == []


def test_put_stream_checks_the_expected_digest(store: LocalBlobStore) -> None:
    data = payload(BIG, seed=1)
    digest = hashlib.sha256(data).hexdigest()

    assert store.put_stream(digest, io.BytesIO(data)) == (digest, len(data), check_of(data))
    assert store.has(digest)


def test_put_stream_with_a_wrong_digest_raises_and_keeps_nothing(
    store: LocalBlobStore, tmp_path: Path
) -> None:
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(IntegrityError):
        store.put_stream(wrong, io.BytesIO(b"content"))
    assert files_under(tmp_path / "store") == []


def test_missing_blob_raises_not_found(store: LocalBlobStore) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has(digest)
    for call in (store.open, store.size, store.local_path):
        with pytest.raises(NotFound, match=digest):
            call(digest)


def test_delete_is_idempotent(store: LocalBlobStore, tmp_path: Path) -> None:
    digest = store.put_file(write(tmp_path / "a.bin", b"data")).digest
    store.delete(digest)
    store.delete(digest)
    assert not store.has(digest)


@pytest.mark.parametrize("digest", ["", "abc", "A" * 64, "../" + "a" * 61])
def test_malformed_digest_is_rejected(store: LocalBlobStore, digest: str) -> None:
    with pytest.raises(InvalidRequest):
        store.has(digest)


@pytest.mark.parametrize("size", [10, BIG])
def test_put_file_reports_progress_for_every_byte(
    store: LocalBlobStore, tmp_path: Path, size: int
) -> None:
    sink = Recorder()
    store.put_file(write(tmp_path / "a.bin", payload(size)), progress=sink)
    assert sink.total == size


@pytest.mark.parametrize("refused", [["copy_file_range"], ["copy_file_range", "sendfile"]])
def test_copy_falls_back_when_the_kernel_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: list[str]
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "refused")

    for name in refused:
        monkeypatch.setattr(os, name, refuse)
    data = payload(BIG)
    src = write(tmp_path / "src.bin", data)
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(tmp_path / "dst.bin", os.O_WRONLY | os.O_CREAT)
    try:
        assert kernel_copy(src_fd, dst_fd, len(data)) == len(data)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert (tmp_path / "dst.bin").read_bytes() == data


@pytest.mark.parametrize("size", [0, 10, SMALL_FILE, SMALL_FILE + 1, BIG])
@pytest.mark.parametrize(("sha256", "check"), [(True, True), (True, False), (False, True)])
def test_copy_and_hash_computes_the_digests_asked_for(
    tmp_path: Path, size: int, sha256: bool, check: bool
) -> None:
    data = payload(size, seed=size)
    src = write(tmp_path / "src.bin", data)
    sink = Recorder()
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(tmp_path / "dst.bin", os.O_WRONLY | os.O_CREAT)
    try:
        done = copy_and_hash(src_fd, dst_fd, size, progress=sink, sha256=sha256, check=check)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert done == Copied(
        hashlib.sha256(data).hexdigest() if sha256 else None,
        check_of(data) if check else None,
        size,
        size,
    )
    assert (tmp_path / "dst.bin").read_bytes() == data
    assert sink.total == size


def test_copy_and_hash_of_a_shorter_source_reports_what_it_read(tmp_path: Path) -> None:
    data = payload(BIG)
    src = write(tmp_path / "src.bin", data)
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(tmp_path / "dst.bin", os.O_WRONLY | os.O_CREAT)
    try:
        done = copy_and_hash(src_fd, dst_fd, BIG + 5000, check=True)
    finally:
        os.close(src_fd)
        os.close(dst_fd)
    assert done == Copied(hashlib.sha256(data).hexdigest(), check_of(data), BIG, BIG)


def test_copy_and_hash_needs_a_digest(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        copy_and_hash(0, 1, 10, sha256=False, check=False)


def _copy(
    tmp_path: Path, data: bytes, size: int, *, dst_flags: int = os.O_RDWR, **kwargs: Any
) -> Copied:
    src = write(tmp_path / "src.bin", data)
    src_fd = os.open(src, os.O_RDONLY)
    dst_fd = os.open(tmp_path / "dst.bin", dst_flags | os.O_CREAT | os.O_TRUNC)
    try:
        return copy_and_hash(src_fd, dst_fd, size, **kwargs)
    finally:
        os.close(src_fd)
        os.close(dst_fd)


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> int:
    """Shrink the upload's windows and chunks so a few MiB cross many of them."""
    monkeypatch.setattr(base_module, "FOLLOW_WINDOW", 256 * 1024)
    monkeypatch.setattr(base_module, "FOLLOW_COPY_CHUNK", 96 * 1024)
    monkeypatch.setattr(base_module, "HASH_CHUNK", 64 * 1024)
    return 256 * 1024


def _no_helper_threads_left() -> bool:
    return not [t for t in threading.enumerate() if t.name in ("regalia-check", "regalia-copy")]


@pytest.mark.parametrize("extra", [0, 1, 4095, 70_000])
def test_upload_hashes_the_copied_bytes_window_by_window(
    tmp_path: Path, small_windows: int, extra: int
) -> None:
    size = 5 * small_windows + SMALL_FILE + extra
    data = payload(size, seed=extra)
    sink = Recorder()
    done = _copy(tmp_path, data, size, progress=sink, fsync=True, check=True)

    assert done == Copied(hashlib.sha256(data).hexdigest(), check_of(data), size, size)
    assert (tmp_path / "dst.bin").read_bytes() == data
    assert sink.total == size
    assert _no_helper_threads_left()


def test_upload_falls_back_to_pread_where_mmap_is_refused(
    tmp_path: Path, small_windows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = []

    def refuse(*args: object, **kwargs: object) -> None:
        refused.append(args)
        raise OSError(errno.ENODEV, "no mmap here")

    monkeypatch.setattr(mmap, "mmap", refuse)
    data = payload(BIG, seed=9)
    done = _copy(tmp_path, data, BIG, check=True)
    assert done == Copied(hashlib.sha256(data).hexdigest(), check_of(data), BIG, BIG)
    assert len(refused) == 1  # tried once, then read the rest


def test_upload_into_a_write_only_fd_hashes_the_source(tmp_path: Path, small_windows: int) -> None:
    data = payload(BIG, seed=4)
    done = _copy(tmp_path, data, BIG, dst_flags=os.O_WRONLY, check=True)
    assert done == Copied(hashlib.sha256(data).hexdigest(), check_of(data), BIG, BIG)
    assert (tmp_path / "dst.bin").read_bytes() == data
    assert _no_helper_threads_left()


@pytest.mark.parametrize("dst_flags", [os.O_RDWR, os.O_WRONLY])
def test_upload_of_a_source_shorter_than_expected_hashes_what_was_copied(
    tmp_path: Path, small_windows: int, dst_flags: int
) -> None:
    data = payload(BIG, seed=2)
    done = _copy(tmp_path, data, BIG + 5000, dst_flags=dst_flags, check=True)
    assert done == Copied(hashlib.sha256(data).hexdigest(), check_of(data), BIG, BIG)


def test_a_failing_copy_is_reported_and_stops_the_helpers(
    tmp_path: Path, small_windows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> int:
        raise OSError(errno.EIO, "disk on fire")

    monkeypatch.setattr(os, "copy_file_range", broken)
    with pytest.raises(OSError, match="disk on fire"):
        _copy(tmp_path, payload(BIG), BIG, check=True)
    assert _no_helper_threads_left()


def test_stream_hasher_hashes_reused_buffers_safely() -> None:
    data = payload(BIG, seed=3)
    buf = bytearray(4096)
    with StreamHasher() as hasher:
        for start in range(0, len(data), len(buf)):
            piece = data[start : start + len(buf)]
            buf[: len(piece)] = piece
            hasher.update(memoryview(buf)[: len(piece)])
        assert hasher.digests() == (hashlib.sha256(data).hexdigest(), check_of(data))
    assert hasher.size == len(data)
    with StreamHasher(check=False) as plain:
        plain.update(data)
    assert plain.digests() == (hashlib.sha256(data).hexdigest(), None)


@pytest.mark.parametrize(
    "check",
    [
        "",
        "blake3:",
        "blake3:" + "A" * 64,
        "blake3:" + "a" * 63,
        "sha256:" + "a" * 64,
        "a" * 64,
        " blake3:" + "a" * 64,
    ],
)
def test_malformed_check_is_rejected(check: str) -> None:
    with pytest.raises(InvalidRequest):
        validate_check(check)
    assert validate_check("blake3:" + "0a" * 32) == "blake3:" + "0a" * 32
