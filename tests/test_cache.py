"""The SDK's download cache (SPEC §7): verified, bounded, and never fetching twice.

Copies out of the cache are verified by the version's BLAKE3 check when it has
one, else (versions logged before checks existed) by SHA-256."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from typing import BinaryIO

import pytest
from blake3 import blake3

import regalia.sdk.cache as cache_module
from regalia.blobs import LocalBlobStore, StoredBlob
from regalia.blobs.base import SMALL_FILE, Copied, ProgressSink, copy_and_hash
from regalia.errors import IntegrityError, InvalidRequest, NotFound
from regalia.sdk.cache import (
    DEFAULT_MAX_BYTES,
    ArtifactCache,
    default_cache_dir,
    default_max_bytes,
    fetch_to,
)
from regalia.sdk.progress import MIN_BAR_BYTES, progress_bar

BIG = 3 * SMALL_FILE + 7  # above SMALL_FILE: copied and hashed by two threads


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, non-repeating bytes."""
    return b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(size // 32 + 1))[
        :size
    ]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class CountingStore:
    """Wraps a local store, counting reads; ``remote=True`` hides its local paths."""

    def __init__(self, inner: LocalBlobStore, *, remote: bool) -> None:
        self.inner, self.remote = inner, remote
        self.opens = self.local_paths = 0

    def has(self, digest: str) -> bool:
        return self.inner.has(digest)

    def put_file(self, src: Path, *, progress: ProgressSink | None = None) -> StoredBlob:
        return self.inner.put_file(src, progress=progress)

    def put_stream(self, digest_expected: str | None, stream: BinaryIO) -> StoredBlob:
        return self.inner.put_stream(digest_expected, stream)

    def open(self, digest: str) -> BinaryIO:
        self.opens += 1
        return self.inner.open(digest)

    def local_path(self, digest: str) -> Path | None:
        self.local_paths += 1
        return None if self.remote else self.inner.local_path(digest)

    def size(self, digest: str) -> int:
        return self.inner.size(digest)

    def delete(self, digest: str) -> None:
        self.inner.delete(digest)

    @property
    def reads(self) -> int:
        return self.opens + self.local_paths


class Recorder:
    def __init__(self) -> None:
        self.total = 0

    def advance(self, n: int) -> None:
        self.total += n


@pytest.fixture(params=["local", "remote"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CountingStore:
    return CountingStore(LocalBlobStore(tmp_path / "store"), remote=request.param == "remote")


@pytest.fixture
def cache(tmp_path: Path) -> ArtifactCache:
    return ArtifactCache(tmp_path / "cache", max_bytes=1 << 30)


def put_blob(store: CountingStore, tmp_path: Path, data: bytes) -> StoredBlob:
    src = tmp_path / "upload" / hashlib.sha256(data).hexdigest()
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return store.put_file(src)


def put(store: CountingStore, tmp_path: Path, data: bytes) -> str:
    return put_blob(store, tmp_path, data).digest


def check_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def corrupt(path: Path) -> None:
    """Flip the first byte in place, keeping the size."""
    path.chmod(0o644)
    with path.open("r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))


@pytest.mark.parametrize("size", [0, 100, BIG])
def test_fetch_writes_the_content_and_creates_parent_folders(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path, size: int
) -> None:
    data = payload(size)
    digest = put(store, tmp_path, data)
    dest = tmp_path / "out" / "deep" / "model.bin"

    assert fetch_to(dest, digest, size, cache=cache, store=store) is True
    assert dest.read_bytes() == data
    assert files_under(tmp_path / "out") == [dest]
    assert files_under(cache.root / "tmp") == []


def test_second_fetch_is_served_by_the_cache_without_reading_the_store(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path
) -> None:
    data = payload(BIG)
    digest = put(store, tmp_path, data)
    fetch_to(tmp_path / "a" / "m.bin", digest, len(data), cache=cache, store=store)
    reads = store.reads
    assert reads > 0

    assert fetch_to(tmp_path / "b" / "m.bin", digest, len(data), cache=cache, store=store) is False
    assert store.reads == reads
    assert (tmp_path / "b" / "m.bin").read_bytes() == data


def test_local_store_blobs_are_cached_by_hard_link(tmp_path: Path, cache: ArtifactCache) -> None:
    store = CountingStore(LocalBlobStore(tmp_path / "store"), remote=False)
    digest = put(store, tmp_path, payload(BIG))
    dest = tmp_path / "out.bin"
    fetch_to(dest, digest, BIG, cache=cache, store=store)

    blob = store.inner.path(digest)
    assert cache.path(digest).stat().st_ino == blob.stat().st_ino
    assert dest.stat().st_ino != blob.stat().st_ino  # the user's copy is independent


def test_local_file_on_another_device_is_copied_and_verified(
    tmp_path: Path, cache: ArtifactCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    data = payload(BIG)
    src = tmp_path / "elsewhere.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    entry = cache.add_from_local(digest, src)
    assert entry.read_bytes() == data and entry.stat().st_ino != src.stat().st_ino

    corrupt(src)
    cache.clean()
    with pytest.raises(IntegrityError):
        cache.add_from_local(digest, src)
    assert files_under(cache.root) == []


def test_damaged_store_blob_raises_and_leaves_no_file(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path
) -> None:
    data = payload(BIG)
    digest = put(store, tmp_path, data)
    corrupt(store.inner.path(digest))
    dest = tmp_path / "out" / "m.bin"

    with pytest.raises(IntegrityError, match=digest):
        fetch_to(dest, digest, len(data), cache=cache, store=store)
    assert files_under(tmp_path / "out") == []
    assert files_under(cache.root) == []


def test_damaged_cache_entry_is_dropped_and_fetched_again(
    tmp_path: Path, cache: ArtifactCache
) -> None:
    store = CountingStore(LocalBlobStore(tmp_path / "store"), remote=True)
    data = payload(BIG)
    digest = put(store, tmp_path, data)
    fetch_to(tmp_path / "first.bin", digest, len(data), cache=cache, store=store)
    corrupt(cache.path(digest))
    dest = tmp_path / "out" / "m.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")

    # Found damaged as it is copied out: dropped and fetched again, never delivered.
    assert fetch_to(dest, digest, len(data), cache=cache, store=store) is True
    assert dest.read_bytes() == data
    assert files_under(tmp_path / "out") == [dest]
    assert cache.path(digest).read_bytes() == data


def test_materialize_of_an_uncached_digest_raises_not_found(
    cache: ArtifactCache, tmp_path: Path
) -> None:
    with pytest.raises(NotFound):
        cache.materialize(hashlib.sha256(b"x").hexdigest(), tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("expected", "declared_size"), [(b"good", 4), (b"data", 5)], ids=["digest", "size"]
)
def test_add_from_stream_rejects_wrong_content_and_keeps_nothing(
    cache: ArtifactCache, expected: bytes, declared_size: int
) -> None:
    digest = hashlib.sha256(expected).hexdigest()
    with pytest.raises(IntegrityError):
        cache.add_from_stream(digest, io.BytesIO(b"data"), declared_size, None)
    assert files_under(cache.root) == []


def test_a_download_written_to_its_destination_too_is_verified_first(
    cache: ArtifactCache, tmp_path: Path
) -> None:
    """``copy_to`` gets the bytes as they arrive, and only verified ones: a
    wrong download leaves the destination as it was, and no temporary file."""
    dest = tmp_path / "out" / "model.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"before")
    good = payload(BIG)
    digest = hashlib.sha256(good).hexdigest()
    bad = bytes(BIG)
    with pytest.raises(IntegrityError):
        cache.add_from_stream(digest, io.BytesIO(bad), BIG, None, copy_to=dest)
    assert files_under(dest.parent) == [dest] and dest.read_bytes() == b"before"
    assert files_under(cache.root) == []
    path = cache.add_from_stream(digest, io.BytesIO(good), BIG, None, copy_to=dest)
    assert dest.read_bytes() == good and path.read_bytes() == good
    assert not dest.samefile(path)  # a copy of its own: editing it leaves the cache alone
    assert files_under(dest.parent) == [dest]


def test_a_download_is_written_once_and_an_edit_of_it_is_caught(
    tmp_path: Path, cache: ArtifactCache
) -> None:
    """The destination of a download is its cache entry's second name (one
    write); editing it in place damages the entry, so the next download
    fetches the content again instead of copying out the edited bytes."""
    store = CountingStore(LocalBlobStore(tmp_path / "store"), remote=True)
    data = payload(BIG)
    digest = put(store, tmp_path, data)
    first = tmp_path / "first" / "m.bin"
    assert fetch_to(first, digest, BIG, cache=cache, store=store) is True
    assert first.samefile(cache.path(digest)) and first.read_bytes() == data
    with first.open("r+b") as f:  # the user edits the download in place
        f.write(b"edited")
    second = tmp_path / "second" / "m.bin"
    assert fetch_to(second, digest, BIG, cache=cache, store=store) is True  # the store again
    assert second.read_bytes() == data
    assert first.read_bytes()[:6] == b"edited"  # the user's edit is theirs
    # A copy out of the cache is a file of its own.
    third = tmp_path / "third" / "m.bin"
    assert fetch_to(third, digest, BIG, cache=cache, store=store) is False
    assert not third.samefile(cache.path(digest)) and third.read_bytes() == data


def test_fetch_reports_each_byte_once(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path
) -> None:
    digest = put(store, tmp_path, payload(BIG))
    sink = Recorder()
    fetch_to(tmp_path / "m.bin", digest, BIG, cache=cache, store=store, progress=sink)
    assert sink.total == BIG


def _add(cache: ArtifactCache, data: bytes, last_used_s: int) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = cache.add_from_stream(digest, io.BytesIO(data), len(data), None)
    os.utime(path, ns=(last_used_s * 10**9, path.stat().st_mtime_ns))
    return digest


def test_clean_evicts_least_recently_used_first(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=1 << 30)
    old, mid, new = (_add(cache, payload(100, seed=i), i + 1) for i in range(3))

    assert cache.usage() == 300
    assert cache.clean(max_bytes=150) == (2, 200)
    assert [e.digest for e in cache.entries()] == [new]
    assert cache.get(old) is None and cache.get(mid) is None
    assert cache.clean() == (1, 100)
    assert cache.usage() == 0 and cache.entries() == []


def test_get_marks_an_entry_as_recently_used(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=1 << 30)
    old = _add(cache, payload(100, seed=1), 1)
    _add(cache, payload(100, seed=2), 2)

    assert cache.get(old) is not None
    cache.clean(max_bytes=100)
    assert [e.digest for e in cache.entries()] == [old]


def test_adding_beyond_max_bytes_evicts_older_entries(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=250)
    first = _add(cache, payload(100, seed=1), 1)
    second = _add(cache, payload(100, seed=2), 2)
    third = _add(cache, payload(100, seed=3), 3)

    assert {e.digest for e in cache.entries()} == {second, third}
    assert cache.get(first) is None and cache.usage() <= 250


def test_an_entry_larger_than_the_cache_is_kept_until_used(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=10)
    store = CountingStore(LocalBlobStore(tmp_path / "store"), remote=True)
    data = payload(100)
    digest = put(store, tmp_path, data)

    fetch_to(tmp_path / "m.bin", digest, len(data), cache=cache, store=store)
    assert (tmp_path / "m.bin").read_bytes() == data


def test_cache_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir(tmp_path) == tmp_path / "cache"
    assert default_max_bytes({}) == DEFAULT_MAX_BYTES == 10 * 2**30
    assert default_max_bytes({"REGALIA_CACHE_MAX_BYTES": "1234"}) == 1234
    with pytest.raises(InvalidRequest, match="REGALIA_CACHE_MAX_BYTES"):
        default_max_bytes({"REGALIA_CACHE_MAX_BYTES": "ten"})
    monkeypatch.setenv("REGALIA_CACHE_MAX_BYTES", "4096")
    assert ArtifactCache(tmp_path / "c").max_bytes == 4096


@pytest.mark.parametrize("value", ["1", "true", "TRUE"])
def test_progress_is_silent_when_regalia_silent_is_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("REGALIA_SILENT", value)
    with progress_bar(1 << 30, "download model.bin") as bar:
        bar.advance(1 << 29)
    assert not bar.enabled
    assert capsys.readouterr().err == ""


def test_progress_is_shown_for_large_transfers_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REGALIA_SILENT", raising=False)
    assert not progress_bar(MIN_BAR_BYTES - 1, "small").enabled
    with progress_bar(MIN_BAR_BYTES, "download model.bin") as bar:
        bar.advance(MIN_BAR_BYTES)
    assert bar.enabled
    assert "download model.bin" in capsys.readouterr().err


# -- verification by the BLAKE3 check ---------------------------------------------------------
class HashSpy:
    """Records which digests each copy out of (or into) the cache computed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[bool, bool]] = []
        monkeypatch.setattr(cache_module, "copy_and_hash", self)

    def __call__(self, src_fd: int, dst_fd: int, size: int, **kwargs: object) -> Copied:
        self.calls.append((bool(kwargs.get("sha256", True)), bool(kwargs.get("check", False))))
        return copy_and_hash(src_fd, dst_fd, size, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 100, BIG])
def test_fetch_with_a_check_writes_the_content(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path, size: int
) -> None:
    data = payload(size, seed=5)
    blob = put_blob(store, tmp_path, data)
    assert blob.check == check_of(data)
    dest = tmp_path / "out" / "model.bin"

    assert fetch_to(dest, blob.digest, size, check=blob.check, cache=cache, store=store)
    assert dest.read_bytes() == data
    assert not fetch_to(dest, blob.digest, size, check=blob.check, cache=cache, store=store)
    assert dest.read_bytes() == data
    assert files_under(tmp_path / "out") == [dest]


def test_a_check_is_verified_by_blake3_only_and_no_check_by_sha256(
    cache: ArtifactCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CountingStore(LocalBlobStore(tmp_path / "store"), remote=False)
    data = payload(BIG)
    blob = put_blob(store, tmp_path, data)
    spy = HashSpy(monkeypatch)

    fetch_to(tmp_path / "a.bin", blob.digest, BIG, check=blob.check, cache=cache, store=store)
    fetch_to(tmp_path / "b.bin", blob.digest, BIG, check=None, cache=cache, store=store)

    assert spy.calls == [(False, True), (True, False)]
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes() == data


def test_damaged_store_blob_fails_the_check_and_leaves_no_file(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path
) -> None:
    data = payload(BIG)
    blob = put_blob(store, tmp_path, data)
    corrupt(store.inner.path(blob.digest))
    dest = tmp_path / "out" / "m.bin"

    with pytest.raises(IntegrityError, match=blob.digest) as caught:
        fetch_to(dest, blob.digest, len(data), check=blob.check, cache=cache, store=store)
    # A remote store's download is verified by SHA-256 (the identity) first.
    assert caught.value.details["expected"] in (blob.check, blob.digest)
    assert files_under(tmp_path / "out") == []
    assert files_under(cache.root) == []


def test_damaged_cache_entry_fails_the_check_is_dropped_and_dest_is_untouched(
    tmp_path: Path, cache: ArtifactCache
) -> None:
    store = CountingStore(LocalBlobStore(tmp_path / "store"), remote=True)
    data = payload(BIG)
    blob = put_blob(store, tmp_path, data)
    fetch_to(tmp_path / "first.bin", blob.digest, BIG, check=blob.check, cache=cache, store=store)
    corrupt(cache.path(blob.digest))
    dest = tmp_path / "out" / "m.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")

    with pytest.raises(IntegrityError, match="damaged") as caught:
        cache.materialize(blob.digest, dest, check=blob.check)
    assert caught.value.details["expected"] == blob.check
    assert dest.read_bytes() == b"previous"
    assert files_under(tmp_path / "out") == [dest]
    assert cache.get(blob.digest) is None

    assert fetch_to(dest, blob.digest, BIG, check=blob.check, cache=cache, store=store) is True
    assert dest.read_bytes() == data


@pytest.mark.parametrize("size", [100, BIG])
def test_damaged_cache_entry_without_a_check_still_fails_the_sha256(
    tmp_path: Path, cache: ArtifactCache, size: int
) -> None:
    store = CountingStore(LocalBlobStore(tmp_path / "store"), remote=True)
    data = payload(size)
    digest = put(store, tmp_path, data)
    fetch_to(tmp_path / "first.bin", digest, size, cache=cache, store=store)
    corrupt(cache.path(digest))
    dest = tmp_path / "out" / "m.bin"

    with pytest.raises(IntegrityError, match="damaged") as caught:
        cache.materialize(digest, dest, check=None)
    assert caught.value.details["expected"] == digest
    assert not dest.exists() and files_under(tmp_path / "out") == []
    assert cache.get(digest) is None


def test_a_wrong_check_is_refused_and_leaves_no_file(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path
) -> None:
    data = payload(BIG)
    blob = put_blob(store, tmp_path, data)
    wrong = check_of(b"other content")
    dest = tmp_path / "out" / "m.bin"

    with pytest.raises(IntegrityError) as caught:
        fetch_to(dest, blob.digest, BIG, check=wrong, cache=cache, store=store)
    assert caught.value.details == {"expected": wrong, "actual": blob.check}
    assert files_under(tmp_path / "out") == []
    assert cache.get(blob.digest) is None
    # The store's blob is intact (only the cache's link to it was dropped).
    assert store.inner.path(blob.digest).read_bytes() == data
    assert fetch_to(dest, blob.digest, BIG, check=blob.check, cache=cache, store=store)
    assert dest.read_bytes() == data


@pytest.mark.parametrize(
    "check", ["", "blake3:", "blake3:" + "A" * 64, "sha256:" + "a" * 64, "md5:" + "a" * 32]
)
def test_a_malformed_check_is_rejected_before_anything_is_read(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path, check: str
) -> None:
    data = payload(100)
    digest = put(store, tmp_path, data)
    dest = tmp_path / "out" / "m.bin"

    with pytest.raises(InvalidRequest, match="BLAKE3"):
        fetch_to(dest, digest, len(data), check=check, cache=cache, store=store)
    assert store.reads == 0
    assert files_under(tmp_path / "out") == [] and files_under(cache.root) == []


def test_add_from_stream_verifies_the_check_too(cache: ArtifactCache) -> None:
    data = payload(BIG)
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(IntegrityError, match="check"):
        cache.add_from_stream(digest, io.BytesIO(data), BIG, check=check_of(b"other"))
    assert files_under(cache.root) == []

    path = cache.add_from_stream(digest, io.BytesIO(data), BIG, check=check_of(data))
    assert path.read_bytes() == data


def test_local_file_on_another_device_is_verified_by_its_check(
    tmp_path: Path, cache: ArtifactCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    data = payload(BIG)
    src = tmp_path / "elsewhere.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()

    assert cache.add_from_local(digest, src, check=check_of(data)).read_bytes() == data
    cache.clean()
    corrupt(src)
    with pytest.raises(IntegrityError):
        cache.add_from_local(digest, src, check=check_of(data))
    assert files_under(cache.root) == []


def test_fetch_with_a_check_reports_each_byte_once(
    store: CountingStore, cache: ArtifactCache, tmp_path: Path
) -> None:
    blob = put_blob(store, tmp_path, payload(BIG))
    sink = Recorder()
    fetch_to(
        tmp_path / "m.bin",
        blob.digest,
        BIG,
        check=blob.check,
        cache=cache,
        store=store,
        progress=sink,
    )
    assert sink.total == BIG
