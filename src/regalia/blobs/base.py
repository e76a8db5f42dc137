"""The blob store contract and the file plumbing its implementations share.

A blob store keeps file contents once, under their SHA-256 (64 lowercase hex
digits). Blobs are immutable: a blob is written to a temporary file, checked,
then renamed into place, and never modified afterwards.

The plumbing here is what makes large copies fast: :func:`copy_and_hash` lets
the kernel copy the bytes (``copy_file_range``, else ``sendfile``) in one
thread while another thread reads the same bytes and hashes them, so a copy
that must also be hashed costs about ``max(copy, hash)`` instead of the sum.

Example::

    store: BlobStore = LocalBlobStore(Path("~/.regalia").expanduser())
    digest, size = store.put_file(Path("model.bin"))
    with store.open(digest) as f:
        header = f.read(16)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import threading
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

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

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_DIGEST = re.compile(r"[0-9a-f]{64}")
# copy_file_range/sendfile refuse some file pairs (other filesystems, old
# kernels, special files); these errors mean "use the next method", not "fail".
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


class ProgressSink(Protocol):
    """Anything that can be told that ``n`` more bytes were processed.

    :class:`regalia.sdk.progress.Progress` is one; blobs do not import the SDK.
    """

    def advance(self, n: int) -> None: ...


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

    def put_file(self, src: Path, *, progress: ProgressSink | None = None) -> tuple[str, int]:
        """Store a local file; return its ``(sha256, size)``.

        Raises:
            FileMissing: ``src`` does not exist.
            FileChanged: ``src`` changed while it was being stored (nothing is kept).
        """
        ...

    def put_stream(self, digest_expected: str | None, stream: BinaryIO) -> tuple[str, int]:
        """Store the bytes of ``stream``; return their ``(sha256, size)``.

        Raises:
            IntegrityError: the bytes do not hash to ``digest_expected`` (nothing is kept).
        """
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


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a SHA-256 in lowercase hex, else raise InvalidRequest."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidRequest(f"not a SHA-256 digest: {digest!r}", digest=str(digest))
    return digest


def create_temp(directory: Path, prefix: str = ".tmp-") -> tuple[int, Path]:
    """Create a new empty file in ``directory``; return its open write fd and path.

    Unlike :func:`tempfile.mkstemp` the file gets the usual ``0o666 & ~umask``
    mode, so it can be renamed into a user's folder as is.
    """
    while True:
        path = directory / f"{prefix}{secrets.token_hex(8)}.part"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
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
) -> tuple[str, int, int]:
    """Copy ``size`` bytes from ``src_fd`` to ``dst_fd`` and hash them, in parallel.

    The kernel copies in a helper thread while this thread reads the source
    and feeds SHA-256 (which releases the GIL), so the cost is about the
    slower of the two. With ``fsync=True`` the helper thread also flushes
    ``dst_fd`` to disk, overlapping that with the hashing too. Neither fd's
    position is used.

    Returns:
        ``(sha256 hex, bytes copied, bytes hashed)``; the counts are lower than
        ``size`` if the source was shorter than expected.
    """
    if size <= SMALL_FILE:
        data = _pread_upto(src_fd, size)
        write_all(dst_fd, data, 0)
        if fsync:
            os.fsync(dst_fd)
        if progress is not None and data:
            progress.advance(len(data))
        return hashlib.sha256(data).hexdigest(), len(data), len(data)
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(src_fd, 0, size, os.POSIX_FADV_SEQUENTIAL)
    job = _CopyThread(src_fd, dst_fd, size, fsync=fsync)
    job.start()
    try:
        digest, hashed = _hash_fd(src_fd, size, job.stop, progress)
    except BaseException:
        job.stop.set()
        raise
    finally:
        job.join()
    if job.error is not None:
        raise job.error
    return digest, job.copied, hashed


class _CopyThread(threading.Thread):
    """Kernel copy of ``size`` bytes, then fsync if asked; stops early when ``stop`` is set."""

    def __init__(self, src_fd: int, dst_fd: int, size: int, *, fsync: bool) -> None:
        super().__init__(name="regalia-copy", daemon=True)
        self.src_fd, self.dst_fd, self.size, self.fsync = src_fd, dst_fd, size, fsync
        self.stop = threading.Event()
        self.copied = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.copied = kernel_copy(self.src_fd, self.dst_fd, self.size, self.stop)
            if self.fsync and not self.stop.is_set():
                os.fsync(self.dst_fd)
        except BaseException as exc:  # handed to the calling thread
            self.error = exc
            self.stop.set()


def kernel_copy(src_fd: int, dst_fd: int, size: int, stop: threading.Event | None = None) -> int:
    """Copy up to ``size`` bytes from offset 0 without passing them through Python.

    Tries ``copy_file_range`` (which may even share extents on XFS/btrfs), then
    ``sendfile``, then plain ``pread``/``pwrite``. Returns the bytes copied.
    """
    methods = ["copy_file_range", "sendfile", "pread"]
    if not hasattr(os, "copy_file_range"):
        methods.remove("copy_file_range")
    offset = 0
    while offset < size and not (stop is not None and stop.is_set()):
        count = min(COPY_CHUNK, size - offset)
        method = methods[0]
        try:
            if method == "copy_file_range":
                n = os.copy_file_range(src_fd, dst_fd, count, offset, offset)
            elif method == "sendfile":
                os.lseek(dst_fd, offset, os.SEEK_SET)
                n = os.sendfile(dst_fd, src_fd, offset, count)
            else:
                chunk = os.pread(src_fd, min(count, STREAM_CHUNK), offset)
                write_all(dst_fd, chunk, offset)
                n = len(chunk)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED and len(methods) > 1:
                methods.pop(0)
                continue
            raise
        if n == 0:
            break
        offset += n
    return offset


def _hash_fd(
    fd: int, size: int, stop: threading.Event, progress: ProgressSink | None
) -> tuple[str, int]:
    """SHA-256 of the first ``size`` bytes of ``fd`` (fewer at EOF); returns (hex, count)."""
    h = hashlib.sha256()
    buf = memoryview(bytearray(HASH_CHUNK))
    offset = pending = 0
    while offset < size and not stop.is_set():
        want = buf[: min(HASH_CHUNK, size - offset)]
        n = os.preadv(fd, [want], offset)
        if n == 0:
            break
        h.update(want[:n])
        offset += n
        if progress is not None:
            pending += n
            if pending >= PROGRESS_STEP:
                progress.advance(pending)
                pending = 0
    if progress is not None and pending:
        progress.advance(pending)
    return h.hexdigest(), offset


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
