"""The blob store contract and the file plumbing its implementations share.

A blob store keeps file contents once, under their SHA-256 (64 lowercase hex
digits). Blobs are immutable: a blob is written to a temporary file, checked,
then renamed into place, and never modified afterwards.

Besides its SHA-256 (its identity), every stored blob gets a *check*: the
BLAKE3 of the same bytes, as ``"blake3:<64 hex>"``. BLAKE3 is about three times
faster than SHA-256 here, so downloads verify the check rather than the digest
and cost about as much as a plain copy (see :func:`copy_and_hash`).

The plumbing here is what makes large copies fast: :func:`copy_and_hash` lets
the kernel copy the bytes (``copy_file_range``, else ``sendfile``) in one
thread while another thread reads the same bytes and hashes them, so a copy
that must also be hashed costs about ``max(copy, hash)`` instead of the sum.
When both digests are wanted (uploads), the hashing thread follows the copy
through the destination, feeds SHA-256 and hands each chunk to a third thread
that feeds BLAKE3, so BLAKE3 stays off the SHA-256 thread's critical path.

Example::

    store: BlobStore = LocalBlobStore(Path("~/.regalia").expanduser())
    blob = store.put_file(Path("model.bin"))  # StoredBlob(digest, size, check)
    with store.open(blob.digest) as f:
        header = f.read(16)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import queue
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol, runtime_checkable

from blake3 import blake3

from regalia.errors import InvalidRequest

MiB = 1 << 20
COPY_CHUNK = 64 * MiB
"""Bytes per ``copy_file_range`` call: big enough to make syscalls negligible."""
HASH_CHUNK = 1 * MiB
"""Bytes read per hash step: small enough to stay in the CPU cache while hashed."""
STREAM_CHUNK = 8 * MiB
"""Bytes read per step from a Python stream (uploads, downloads)."""
SMALL_FILE = 1 * MiB
"""Files up to this size are read once and hashed inline: a thread would cost more."""
PROGRESS_STEP = 8 * MiB
"""Progress is reported in steps of this many bytes, to keep it cheap."""

FOLLOW_WINDOW = 16 * MiB
"""Bytes of the destination mapped at a time when an upload hashes what it copied."""
FOLLOW_COPY_CHUNK = 8 * MiB
"""Bytes per kernel copy call when another thread follows the copy: it starts sooner."""
RELAY_DEPTH = 8
"""Chunks of :data:`HASH_CHUNK` queued for the BLAKE3 thread of an upload."""
STREAM_RELAY_DEPTH = 2
"""Stream chunks queued for the BLAKE3 thread (bounds memory to a few chunks)."""

CHECK_PREFIX = "blake3:"
"""The prefix of a check: the algorithm, then the hex digest."""

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHECK = re.compile(r"blake3:[0-9a-f]{64}")
# copy_file_range/sendfile refuse some file pairs (other filesystems, old
# kernels, special files); these errors mean "use the next method", not "fail".
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


# Contents up to this size may be uploaded to a server in one request; larger
# ones go in resumable parts (client and server agree on it).
WHOLE_UPLOAD_MAX = 16 * 1024 * 1024


class ProgressSink(Protocol):
    """Anything that can be told that ``n`` more bytes were processed.

    :class:`regalia.sdk.progress.Progress` is one; blobs do not import the SDK.
    """

    def advance(self, n: int) -> None: ...


class StoredBlob(NamedTuple):
    """What storing a blob returns: its SHA-256 ``digest`` (its identity), its
    ``size`` in bytes and its ``check``, the BLAKE3 of the same bytes as
    ``"blake3:<64 hex>"`` (what downloads verify)."""

    digest: str
    size: int
    check: str


class BlobInfo(NamedTuple):
    """One stored blob as a listing sees it: its SHA-256 ``digest``, its
    ``size`` in bytes and ``modified``, when it was last written (POSIX
    seconds; garbage collection spares blobs younger than its grace period)."""

    digest: str
    size: int
    modified: float


class Copied(NamedTuple):
    """What :func:`copy_and_hash` did: the digests asked for (else ``None``),
    the bytes copied and the bytes hashed (by every hasher)."""

    sha256: str | None
    check: str | None
    copied: int
    hashed: int


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed, immutable storage of file contents keyed by SHA-256.

    Every method that takes a digest raises :class:`~regalia.errors.InvalidRequest`
    for a malformed one, and :class:`~regalia.errors.StorageUnavailable` when the
    backend itself fails (disk full, bucket unreachable).
    """

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        ...

    def put_file(self, src: Path, *, progress: ProgressSink | None = None) -> StoredBlob:
        """Store a local file; return its ``StoredBlob(sha256, size, check)``.

        Raises:
            FileMissing: ``src`` does not exist.
            FileChanged: ``src`` changed while it was being stored (nothing is kept).
        """
        ...

    def put_stream(self, digest_expected: str | None, stream: BinaryIO) -> StoredBlob:
        """Store the bytes of ``stream``; return their ``StoredBlob(sha256, size, check)``.

        Raises:
            IntegrityError: the bytes do not hash to ``digest_expected`` (nothing is kept).
        """
        ...

    def adopt(self, path: Path, blob: StoredBlob) -> StoredBlob:
        """Take a complete file whose digests the caller verified (a server's
        received upload) into the store; ``path`` is consumed either way."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading. Raises :class:`~regalia.errors.NotFound`."""
        ...

    def local_path(self, digest: str) -> Path | None:
        """The blob's path on this machine, or ``None`` for a remote store.

        Raises :class:`~regalia.errors.NotFound` if a local store lacks the blob.
        """
        ...

    def size(self, digest: str) -> int:
        """The blob's size in bytes. Raises :class:`~regalia.errors.NotFound`."""
        ...

    def delete(self, digest: str) -> None:
        """Remove a blob; removing a missing blob is not an error."""
        ...

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob, in no particular order (garbage collection walks it).

        Only complete blobs: temporary files and unfinished uploads are not listed.
        """
        ...


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a SHA-256 in lowercase hex, else raise InvalidRequest."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidRequest(f"not a SHA-256 digest: {digest!r}", digest=str(digest))
    return digest


def validate_check(check: str) -> str:
    """Return ``check`` if it is ``"blake3:"`` + 64 lowercase hex digits, else raise
    InvalidRequest (an unknown algorithm is refused, not skipped)."""
    if not isinstance(check, str) or not _CHECK.fullmatch(check):
        raise InvalidRequest(f"not a BLAKE3 check: {check!r}", check=str(check))
    return check


def new_check_hasher() -> blake3:
    """A BLAKE3 hasher for checks: single-threaded (it runs beside a copy and,
    on uploads, SHA-256, so more threads only compete for the same cores)."""
    return blake3(max_threads=1)


def check_of(data: bytes | memoryview) -> str:
    """The check of some bytes: ``"blake3:<hex>"``."""
    return CHECK_PREFIX + blake3(data).hexdigest()


def create_temp(
    directory: Path, prefix: str = ".tmp-", *, readable: bool = False
) -> tuple[int, Path]:
    """Create a new empty file in ``directory``; return its open fd and path.

    The fd is write-only, or read-write with ``readable=True`` (so that what
    is written can be hashed back, see :func:`copy_and_hash`). Unlike
    :func:`tempfile.mkstemp` the file gets the usual ``0o666 & ~umask`` mode,
    so it can be renamed into a user's folder as is.
    """
    access = os.O_RDWR if readable else os.O_WRONLY
    while True:
        path = directory / f"{prefix}{secrets.token_hex(8)}.part"
        try:
            fd = os.open(path, access | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        return fd, path


def discard_temp(fd: int | None, path: Path) -> None:
    """Close (if open) and remove a temporary file, ignoring errors: used on failure paths."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(path)


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    """Write every byte of ``data`` (at ``offset`` if given, else at the file position)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


def copy_and_hash(
    src_fd: int,
    dst_fd: int,
    size: int,
    *,
    progress: ProgressSink | None = None,
    fsync: bool = False,
    sha256: bool = True,
    check: bool = False,
) -> Copied:
    """Copy ``size`` bytes from ``src_fd`` to ``dst_fd`` and hash them, in parallel.

    The kernel copies in a helper thread while this thread hashes (hashers
    release the GIL), so the cost is about the slower of the two. With
    ``fsync=True`` the helper thread also flushes ``dst_fd`` to disk,
    overlapping that with the hashing too. Neither fd's position is used.

    With one digest, this thread reads the source by itself and hashes it.
    With both (uploads) and a readable ``dst_fd``, this thread hashes the
    *destination* as the copy lands, window by window through ``mmap`` (no
    extra copy of the bytes), feeding SHA-256 and handing each chunk to a
    third thread that feeds BLAKE3: both digests are of the very bytes stored,
    and BLAKE3 stays off the SHA-256 thread. (On this 2-core machine, hashing
    the destination this way took ~0.79 s per GiB against ~0.85 s for
    reading the source again, and ~0.90 s for both digests in one thread.)

    Args:
        sha256: compute the SHA-256 (the blob's identity).
        check: compute the BLAKE3 check.

    Returns:
        The digests asked for, and the counts of bytes copied and hashed:
        lower than ``size`` if the source was shorter than expected.
    """
    if not (sha256 or check):
        raise ValueError("copy_and_hash needs at least one digest")
    if size <= SMALL_FILE:
        data = _pread_upto(src_fd, size)
        write_all(dst_fd, data, 0)
        if fsync:
            os.fsync(dst_fd)
        if progress is not None and data:
            progress.advance(len(data))
        return Copied(
            hashlib.sha256(data).hexdigest() if sha256 else None,
            check_of(data) if check else None,
            len(data),
            len(data),
        )
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(src_fd, 0, size, os.POSIX_FADV_SEQUENTIAL)
    follow = sha256 and check and _readable(dst_fd)
    job = _CopyThread(
        src_fd, dst_fd, size, fsync=fsync, chunk=FOLLOW_COPY_CHUNK if follow else COPY_CHUNK
    )
    main: hashlib._Hash | blake3 = hashlib.sha256() if sha256 else new_check_hasher()
    relay = _HashRelay(new_check_hasher()) if sha256 and check else None
    job.start()
    try:
        if relay is not None:
            relay.start()
        if follow:
            assert relay is not None
            hashed = _hash_copied(job, dst_fd, size, progress, main, relay)
        else:
            hashed = _hash_fd(src_fd, size, job.stop, progress, main, relay)
    except BaseException:
        job.stop.set()
        raise
    finally:
        if relay is not None:
            relay.finish()
        job.join()
    if job.error is not None:
        raise job.error
    if relay is not None and relay.error is not None:
        raise relay.error
    if sha256:
        return Copied(
            main.hexdigest(),
            CHECK_PREFIX + relay.hasher.hexdigest() if relay is not None else None,
            job.copied,
            hashed,
        )
    return Copied(None, CHECK_PREFIX + main.hexdigest(), job.copied, hashed)


class _HashRelay(threading.Thread):
    """Feeds a hasher, in its own thread, with chunks another thread hands over.

    Chunks are hashed in the order fed; a ``memoryview`` is released once
    hashed, and :meth:`then` queues an action to run once everything fed
    before it is hashed (e.g. closing the ``mmap`` the views came from). The
    queue is bounded, so a fast feeder waits instead of piling up chunks.
    """

    def __init__(self, hasher: blake3, depth: int = RELAY_DEPTH) -> None:
        super().__init__(name="regalia-check", daemon=True)
        self.hasher = hasher
        self.error: BaseException | None = None
        self._todo: queue.Queue[bytes | memoryview | Callable[[], object] | None] = queue.Queue(
            depth
        )

    def feed(self, chunk: bytes | memoryview) -> None:
        """Queue ``chunk`` to be hashed (it must not change until then)."""
        self._todo.put(chunk)

    def then(self, action: Callable[[], object]) -> None:
        """Run ``action`` in the helper thread once everything fed so far is hashed."""
        self._todo.put(action)

    def finish(self) -> None:
        """Wait until everything fed has been hashed and every action run."""
        if self.is_alive():
            self._todo.put(None)
            self.join()

    def run(self) -> None:
        while (item := self._todo.get()) is not None:
            try:
                if callable(item):
                    item()
                elif self.error is None:
                    self.hasher.update(item)
            except BaseException as exc:  # reported by the feeder after finish()
                self.error = self.error or exc
            finally:
                if isinstance(item, memoryview):
                    item.release()


class _CopyThread(threading.Thread):
    """Kernel copy of ``size`` bytes, then fsync if asked; stops early when ``stop`` is set.

    :meth:`wait_for` lets another thread follow the copy as it progresses.
    """

    def __init__(
        self, src_fd: int, dst_fd: int, size: int, *, fsync: bool, chunk: int = COPY_CHUNK
    ) -> None:
        super().__init__(name="regalia-copy", daemon=True)
        self.src_fd, self.dst_fd, self.size, self.fsync = src_fd, dst_fd, size, fsync
        self.chunk = chunk
        self.stop = threading.Event()
        self.copied = 0
        self.error: BaseException | None = None
        self._moved = threading.Condition()
        self._copying = True

    def run(self) -> None:
        try:
            self.copied = kernel_copy(
                self.src_fd, self.dst_fd, self.size, self.stop, chunk=self.chunk, on_copied=self._on
            )
        except BaseException as exc:  # handed to the calling thread
            self.error = exc
            self.stop.set()
        finally:
            with self._moved:
                self._copying = False
                self._moved.notify_all()
        try:
            if self.fsync and not self.stop.is_set():
                os.fsync(self.dst_fd)
        except BaseException as exc:
            self.error = exc
            self.stop.set()

    def _on(self, copied: int) -> None:
        with self._moved:
            self.copied = copied
            self._moved.notify_all()

    def wait_for(self, end: int) -> int:
        """Wait until ``end`` bytes are copied or the copy is over; return the bytes copied."""
        with self._moved:
            while self.copied < end and self._copying:
                self._moved.wait()
            return self.copied


def kernel_copy(
    src_fd: int,
    dst_fd: int,
    size: int,
    stop: threading.Event | None = None,
    *,
    chunk: int = COPY_CHUNK,
    on_copied: Callable[[int], None] | None = None,
) -> int:
    """Copy up to ``size`` bytes from offset 0 without passing them through Python.

    Tries ``copy_file_range`` (which may even share extents on XFS/btrfs), then
    ``sendfile``, then plain ``pread``/``pwrite``, ``chunk`` bytes per call;
    ``on_copied`` is told the bytes copied so far after each. Returns the bytes
    copied.
    """
    methods = ["copy_file_range", "sendfile", "pread"]
    if not hasattr(os, "copy_file_range"):
        methods.remove("copy_file_range")
    offset = 0
    while offset < size and not (stop is not None and stop.is_set()):
        count = min(chunk, size - offset)
        method = methods[0]
        try:
            if method == "copy_file_range":
                n = os.copy_file_range(src_fd, dst_fd, count, offset, offset)
            elif method == "sendfile":
                os.lseek(dst_fd, offset, os.SEEK_SET)
                n = os.sendfile(dst_fd, src_fd, offset, count)
            else:
                data = os.pread(src_fd, min(count, STREAM_CHUNK), offset)
                write_all(dst_fd, data, offset)
                n = len(data)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED and len(methods) > 1:
                methods.pop(0)
                continue
            raise
        if n == 0:
            break
        offset += n
        if on_copied is not None:
            on_copied(offset)
    return offset


def _hash_copied(
    job: _CopyThread,
    dst_fd: int,
    size: int,
    progress: ProgressSink | None,
    hasher: hashlib._Hash | blake3,
    relay: _HashRelay,
) -> int:
    """Hash what ``job`` writes to ``dst_fd`` as it lands: feed ``hasher`` here and
    ``relay`` in its thread. Returns how many bytes were hashed.

    Each window of :data:`FOLLOW_WINDOW` bytes is mapped once copied, so the
    hashers read the page cache directly; the relay closes the window once it
    has hashed it. A window is only mapped over bytes already written, so the
    mapping never reaches past the end of the file. Where ``mmap`` is refused
    (some filesystems) the rest is read with ``pread``.
    """
    offset = 0
    use_mmap = True
    while offset < size and not job.stop.is_set():
        end = min(job.wait_for(min(offset + FOLLOW_WINDOW, size)), offset + FOLLOW_WINDOW)
        if end <= offset:  # the copy stopped short: the source shrank, or it failed
            break
        if use_mmap:
            try:
                window = mmap.mmap(dst_fd, end - offset, offset=offset, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                use_mmap = False
        if use_mmap:
            try:
                with memoryview(window) as whole:
                    for pos in range(0, end - offset, HASH_CHUNK):
                        piece = whole[pos : pos + HASH_CHUNK]
                        hasher.update(piece)
                        relay.feed(piece)
            finally:
                relay.then(window.close)
        else:
            pos = offset
            while pos < end:
                data = os.pread(dst_fd, min(HASH_CHUNK, end - pos), pos)
                if not data:
                    break
                hasher.update(data)
                relay.feed(data)
                pos += len(data)
            if pos < end:
                return pos
        if progress is not None:
            progress.advance(end - offset)
        offset = end
    return offset


def _hash_fd(
    fd: int,
    size: int,
    stop: threading.Event,
    progress: ProgressSink | None,
    hasher: hashlib._Hash | blake3,
    relay: _HashRelay | None = None,
) -> int:
    """Feed ``hasher`` (and ``relay``, if any) the first ``size`` bytes of ``fd``
    (fewer at EOF); return how many bytes were hashed."""
    buf = memoryview(bytearray(HASH_CHUNK))
    offset = pending = 0
    while offset < size and not stop.is_set():
        count = min(HASH_CHUNK, size - offset)
        if relay is None:
            n = os.preadv(fd, [buf[:count]], offset)
            data: bytes | memoryview = buf[:n]
        else:  # a new buffer per chunk: the relay hashes it later
            data = os.pread(fd, count, offset)
            n = len(data)
        if n == 0:
            break
        hasher.update(data)
        if relay is not None:
            relay.feed(data)
        offset += n
        if progress is not None:
            pending += n
            if pending >= PROGRESS_STEP:
                progress.advance(pending)
                pending = 0
    if progress is not None and pending:
        progress.advance(pending)
    return offset


def _readable(fd: int) -> bool:
    """Whether ``fd`` was opened for reading (``O_RDWR`` or ``O_RDONLY``)."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_WRONLY
    except OSError:
        return False


class StreamHasher:
    """SHA-256 and, if asked, the BLAKE3 check of a stream's chunks: SHA-256 in
    the caller's thread, BLAKE3 in a helper thread fed through a short queue,
    so the two overlap.

    Use as a context manager (which ends the helper thread); :meth:`digests`
    returns ``(sha256 hex, check or None)``. With ``sha256=False`` only the check
    is computed (:meth:`check_digest`).
    """

    def __init__(self, *, check: bool = True, sha256: bool = True) -> None:
        if not (check or sha256):
            raise ValueError("a StreamHasher computes at least one digest")
        self._sha = hashlib.sha256() if sha256 else None
        self._relay = _HashRelay(new_check_hasher(), STREAM_RELAY_DEPTH) if check else None
        self.size = 0

    def __enter__(self) -> StreamHasher:
        if self._relay is not None:
            self._relay.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._relay is not None:
            self._relay.finish()

    def update(self, chunk: bytes | bytearray | memoryview) -> None:
        """Hash the next chunk (a mutable buffer is copied for the helper thread)."""
        if self._relay is not None:
            if not isinstance(chunk, bytes):  # a reused buffer would change under the helper
                chunk = bytes(chunk)
            self._relay.feed(chunk)
        if self._sha is not None:
            self._sha.update(chunk)
        self.size += len(chunk)

    def digests(self) -> tuple[str, str | None]:
        """``(sha256 hex, "blake3:<hex>" or None)`` of everything fed."""
        if self._sha is None:
            raise ValueError("this StreamHasher computes the check only: use check_digest()")
        if self._relay is None:
            return self._sha.hexdigest(), None
        return self._sha.hexdigest(), self.check_digest()

    def check_digest(self) -> str:
        """``"blake3:<hex>"`` of everything fed."""
        if self._relay is None:
            raise ValueError("this StreamHasher computes no check")
        self._relay.finish()
        if self._relay.error is not None:
            raise self._relay.error
        return CHECK_PREFIX + self._relay.hasher.hexdigest()


def _pread_upto(fd: int, size: int) -> bytes:
    """Read ``size`` bytes from offset 0, or fewer at EOF."""
    parts: list[bytes] = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)
