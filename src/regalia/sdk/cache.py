"""The SDK's local cache of file contents, keyed by SHA-256 (SPEC §7).

Layout, easy to inspect with ``ls``::

    <root>/<d[:2]>/<digest>     one file per cached content
    <root>/tmp/                 downloads in progress

An entry is only ever added complete and verified, and every use verifies it
again while copying it out, so a damaged entry is detected, dropped and never
delivered. Verification uses the version's *check* when it has one (the BLAKE3
of the same bytes, ``"blake3:<hex>"``, recorded at upload: about three times
faster than SHA-256, so a verified copy costs about as much as a plain one);
files of versions logged before checks existed are verified by SHA-256.

A download is written once: the destination is a hard link of its new entry
(on the same file system), so editing a downloaded file in place damages the
entry; its next use finds that and fetches the content again.

The cache is bounded: after each add, least recently used entries are evicted
until it fits in ``max_bytes`` (an entry's last use is its atime, set
explicitly on each use, so ``relatime``/``noatime`` mounts do not matter).

Example::

    cache = ArtifactCache(default_cache_dir(home))
    fetch_to(Path("out/model.bin"), digest, size, check=check, cache=cache, store=store)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, NamedTuple

from regalia.blobs.base import (
    STREAM_CHUNK,
    BlobStore,
    ProgressSink,
    StreamHasher,
    copy_and_hash,
    create_temp,
    discard_temp,
    kernel_copy,
    validate_check,
    validate_digest,
    write_all,
)
from regalia.errors import IntegrityError, InvalidRequest, NotFound

MAX_BYTES_ENV = "REGALIA_CACHE_MAX_BYTES"
DEFAULT_MAX_BYTES = 10 << 30


class CacheEntry(NamedTuple):
    """One cached content: its digest, size in bytes and last use (epoch seconds)."""

    digest: str
    size: int
    last_used: float


def default_cache_dir(home: Path) -> Path:
    """The cache folder under a Regalia home folder: ``home / "cache"``."""
    return Path(home) / "cache"


def default_max_bytes(environ: Mapping[str, str] | None = None) -> int:
    """The cache bound: ``REGALIA_CACHE_MAX_BYTES`` if set, else 10 GiB.

    Raises:
        InvalidRequest: the variable is not a non-negative integer.
    """
    env = os.environ if environ is None else environ
    raw = env.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    if not raw.isdigit():
        raise InvalidRequest(f"{MAX_BYTES_ENV} must be a number of bytes, got {raw!r}")
    return int(raw)


class ArtifactCache:
    """A bounded, content-addressed cache of verified file contents.

    Args:
        root: the cache folder (created on first add).
        max_bytes: the bound; ``None`` reads :func:`default_max_bytes`.
    """

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self._tmp = self.root / "tmp"

    def __repr__(self) -> str:
        return f"ArtifactCache({str(self.root)!r}, max_bytes={self.max_bytes})"

    def path(self, digest: str) -> Path:
        """Where the entry for ``digest`` lives (whether or not it exists)."""
        validate_digest(digest)
        return self.root / digest[:2] / digest

    def get(self, digest: str) -> Path | None:
        """The cached file for ``digest`` (marking it used), or ``None``."""
        path = self.path(digest)
        if not path.is_file():
            return None
        _touch(path)
        return path

    def add_from_local(self, digest: str, path: Path, *, check: str | None = None) -> Path:
        """Cache an immutable local file, e.g. a blob of a local store.

        On the same filesystem the entry is a hard link (no copy; it is
        verified when used). Otherwise the file is copied and verified: by
        ``check`` if given, else by SHA-256.

        Raises:
            IntegrityError: the copied file does not match ``check`` (or ``digest``).
            InvalidRequest: ``check`` is not a BLAKE3 check.
        """
        if check is not None:
            validate_check(check)
        final = self.path(digest)
        if final.is_file():
            _touch(final)
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        if not self._link(Path(path), final):
            self._copy_in(digest, Path(path), final, check)
        _touch(final)
        self._evict(self.max_bytes, keep=digest)
        return final

    def add_from_stream(
        self,
        digest: str,
        stream: BinaryIO,
        size: int,
        progress: ProgressSink | None = None,
        *,
        check: str | None = None,
        copy_to: Path | None = None,
    ) -> Path:
        """Cache the content of ``stream`` (e.g. a download) after verifying it;
        with ``copy_to``, write it there too as it arrives (no copy out of the
        cache afterwards), renamed onto ``copy_to`` once verified.

        With ``check`` (the BLAKE3 digest the server took of the same bytes
        when they were uploaded, from the version's manifest), the content is
        verified against it alone, in a helper thread over the chunks: the
        manifest binds the check to ``digest``, and BLAKE3 costs a fraction of
        SHA-256. Without one, the SHA-256 is verified.

        Raises:
            IntegrityError: the content is not ``size`` bytes hashing to ``digest``
                (and matching ``check``); nothing is kept.
            InvalidRequest: ``check`` is not a BLAKE3 check.
        """
        if check is not None:
            validate_check(check)
        final = self.path(digest)
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp_fd: int | None
        copy_fd: int | None = None
        copy_tmp: Path | None = None
        tmp_fd, tmp = create_temp(self._tmp)
        try:
            if copy_to is not None:
                copy_to.parent.mkdir(parents=True, exist_ok=True)
                # A short prefix keeps the temp name within NAME_MAX for long file names.
                copy_fd, copy_tmp = create_temp(copy_to.parent, prefix=f".{copy_to.name[:40]}.")
            with StreamHasher(check=check is not None, sha256=check is None) as hasher:
                while chunk := stream.read(STREAM_CHUNK):
                    hasher.update(chunk)
                    write_all(tmp_fd, chunk)
                    if copy_fd is not None:
                        write_all(copy_fd, chunk)
                    if progress is not None:
                        progress.advance(len(chunk))
                if check is None:
                    actual, _ = hasher.digests()
                    _verify(digest, actual, size, hasher.size, what="downloaded content")
                else:
                    what = f"downloaded content of {digest} (the manifest's check)"
                    _verify(check, hasher.check_digest(), size, hasher.size, what=what)
            # No fsync: a cache entry is re-verified on every use, so a torn
            # write after a crash is caught and dropped, never delivered.
            os.close(tmp_fd)
            tmp_fd = None
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            if copy_fd is not None and copy_tmp is not None and copy_to is not None:
                os.close(copy_fd)
                copy_fd = None
                os.replace(copy_tmp, copy_to)
        except BaseException:
            discard_temp(tmp_fd, tmp)
            if copy_tmp is not None:
                discard_temp(copy_fd, copy_tmp)
            raise
        _touch(final)
        self._evict(self.max_bytes, keep=digest)
        return final

    def materialize(
        self,
        digest: str,
        dest: Path,
        progress: ProgressSink | None = None,
        *,
        check: str | None = None,
        verify: bool = True,
    ) -> None:
        """Copy the cached content to ``dest``, verifying it on the way.

        The copy goes to a temporary file next to ``dest`` and is renamed onto
        it only once verified; parent folders are created. The kernel copies
        while another thread hashes: BLAKE3 against ``check`` when given
        (``"blake3:<hex>"``), else SHA-256 against ``digest``. ``verify=False``
        skips the hash (only the size is checked): for an entry this process
        has just verified, where hashing again would double the cost.

        Raises:
            NotFound: ``digest`` is not cached.
            IntegrityError: the entry is damaged; it is dropped and ``dest`` untouched.
            InvalidRequest: ``check`` is not a BLAKE3 check.
        """
        if check is not None:
            validate_check(check)
        src = self.path(digest)
        try:
            src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"{digest} is not in the cache", digest=digest) from None
        try:
            size = os.fstat(src_fd).st_size
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp_fd: int | None
            # A short prefix keeps the temp name within NAME_MAX for long file names.
            tmp_fd, tmp = create_temp(dest.parent, prefix=f".{dest.name[:40]}.")
            try:
                expected = digest if check is None else check
                if verify:
                    done = copy_and_hash(
                        src_fd,
                        tmp_fd,
                        size,
                        progress=progress,
                        sha256=check is None,
                        check=check is not None,
                    )
                    actual = done.sha256 if check is None else done.check
                    copied, hashed = done.copied, done.hashed
                else:
                    actual, copied = expected, kernel_copy(src_fd, tmp_fd, size)
                    hashed = copied
                if actual != expected or not copied == hashed == size:
                    src.unlink(missing_ok=True)
                    what = "hashes to" if check is None else "has the check"
                    raise IntegrityError(
                        f"cached content of {digest} is damaged ({what} {actual}, "
                        f"expected {expected}); it was removed from the cache, fetch again",
                        expected=expected,
                        actual=actual,
                    )
                os.close(tmp_fd)
                tmp_fd = None
                os.replace(tmp, dest)
            except BaseException:
                discard_temp(tmp_fd, tmp)
                raise
        finally:
            os.close(src_fd)
        _touch(src)

    def same_device(self, folder: Path) -> bool:
        """Whether ``folder`` is on the cache's file system (entries can be linked there)."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        try:
            return os.stat(folder).st_dev == os.stat(self._tmp).st_dev
        except OSError:
            return False

    def link_out(self, digest: str, dest: Path) -> None:
        """Make ``dest`` a hard link of the entry just downloaded (no bytes
        written), replacing ``dest`` atomically; a copy where links fail.

        Only a download's own entry is linked out, once: an entry linked from
        a local store is always copied (editing ``dest`` must not reach the
        store). Editing ``dest`` in place damages the entry, which its next use
        finds (every use verifies it) and fetches again.
        """
        src = self.path(digest)
        tmp = dest.parent / f".{dest.name[:40]}.{os.getpid()}.{time.monotonic_ns()}.link"
        try:
            os.link(src, tmp)
        except OSError:  # a file system without hard links, or too many of them
            self.materialize(digest, dest, verify=False)
            return
        try:
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def entries(self) -> list[CacheEntry]:
        """Every cached content, in no particular order."""
        out: list[CacheEntry] = []
        if not self.root.is_dir():
            return out
        for sub in os.scandir(self.root):
            if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                if len(entry.name) != 64 or not entry.name.startswith(sub.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # evicted meanwhile by another process
                    continue
                out.append(CacheEntry(entry.name, st.st_size, st.st_atime_ns / 1e9))
        return out

    def usage(self) -> int:
        """Bytes held by the cache (a hard-linked entry counts its full size)."""
        return sum(e.size for e in self.entries())

    def clean(self, max_bytes: int | None = None) -> tuple[int, int]:
        """Evict least recently used entries until at most ``max_bytes`` remain.

        Args:
            max_bytes: the bound to reach; ``None`` empties the cache.

        Returns:
            ``(files removed, bytes freed)``.
        """
        return self._evict(0 if max_bytes is None else max_bytes, keep=None)

    def _evict(self, limit: int, keep: str | None) -> tuple[int, int]:
        entries = sorted(self.entries(), key=lambda e: e.last_used)
        total = sum(e.size for e in entries)
        removed = freed = 0
        for entry in entries:
            if total <= limit:
                break
            if entry.digest == keep:  # just added: the caller is about to use it
                continue
            self.path(entry.digest).unlink(missing_ok=True)
            total -= entry.size
            removed += 1
            freed += entry.size
        return removed, freed

    def _link(self, src: Path, final: Path) -> bool:
        """Hard-link ``src`` as ``final`` if both are on one device; False if not possible."""
        try:
            if os.stat(src).st_dev != os.stat(final.parent).st_dev:
                return False
            os.link(src, final)
        except FileExistsError:
            return True  # another process cached it meanwhile
        except FileNotFoundError:
            raise NotFound(f"local file {src} is missing", path=str(src)) from None
        except OSError:  # e.g. protected_hardlinks, filesystems without links
            return False
        return True

    def _copy_in(self, digest: str, src: Path, final: Path, check: str | None) -> None:
        """Copy a local file into the cache, verifying it by ``check``, else by SHA-256."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        src_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(src_fd).st_size
            tmp_fd: int | None
            tmp_fd, tmp = create_temp(self._tmp)
            try:
                done = copy_and_hash(
                    src_fd, tmp_fd, size, sha256=check is None, check=check is not None
                )
                got = min(done.copied, done.hashed)
                if check is None:
                    _verify(digest, done.sha256, size, got, what=f"local file {src}")
                else:
                    _verify(check, done.check, size, got, what=f"local file {src}")
                os.close(tmp_fd)
                tmp_fd = None
                os.replace(tmp, final)
            except BaseException:
                discard_temp(tmp_fd, tmp)
                raise
        finally:
            os.close(src_fd)


def fetch_to(
    dest: Path,
    digest: str,
    size: int,
    *,
    check: str | None = None,
    cache: ArtifactCache,
    store: BlobStore,
    progress: ProgressSink | None = None,
) -> bool:
    """Write the content ``digest`` to ``dest``, through the cache, verified.

    A cached content is copied out without touching the store (a damaged
    entry is dropped and fetched again). Otherwise, from a local store, it is
    cached first (hard link) and copied out; a download is cached as it
    arrives and ``dest`` is linked to the entry (:meth:`ArtifactCache.link_out`;
    on another file system it is written beside the entry, nothing is read
    back). Either way the bytes are verified by ``check`` (BLAKE3,
    ``"blake3:<hex>"``) when the version has one, else by SHA-256.

    Returns:
        Whether the store was read.

    Raises:
        IntegrityError: the store's content is damaged; ``dest`` is left untouched.
        InvalidRequest: ``check`` is not a BLAKE3 check.
        NotFound: the store does not have the blob.
    """
    if check is not None:
        validate_check(check)
    if cache.get(digest) is not None:
        try:
            cache.materialize(digest, dest, progress, check=check)
            return False
        except NotFound:
            pass  # evicted by another process since get(): fetch it again
        except IntegrityError:
            pass  # damaged (a linked download edited in place?): dropped, fetch it again
    local = store.local_path(digest)
    if local is not None:
        cache.add_from_local(digest, local, check=check)
        cache.materialize(digest, dest, progress, check=check)
        return True
    dest.parent.mkdir(parents=True, exist_ok=True)
    linkable = cache.same_device(dest.parent)
    with store.open(digest) as stream:
        # Verified once as it arrives, and written once: dest becomes a second
        # name of the cache entry; across file systems, both are written.
        cache.add_from_stream(
            digest, stream, size, progress, check=check, copy_to=None if linkable else dest
        )
    if linkable:
        cache.link_out(digest, dest)
    return True


def _verify(expected: str, actual: str | None, size: int, got: int, *, what: str) -> None:
    if actual != expected or got != size:
        raise IntegrityError(
            f"{what} is {got} bytes hashing to {actual}; expected {size} bytes hashing to "
            f"{expected}",
            expected=expected,
            actual=actual,
        )


def _touch(path: Path) -> None:
    """Mark an entry used now (atime only: mtime of a linked store blob stays intact)."""
    # Not ours to touch (e.g. a linked blob owned by someone else): skip.
    with contextlib.suppress(OSError):
        os.utime(path, ns=(time.time_ns(), os.stat(path).st_mtime_ns))


__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_BYTES_ENV",
    "ArtifactCache",
    "CacheEntry",
    "default_cache_dir",
    "default_max_bytes",
    "fetch_to",
]
