"""A blob store in a local folder: ``<root>/blobs/<d[:2]>/<d[2:4]>/<digest>``.

Writes go to ``<root>/tmp``, are fsynced, then renamed into place, so a blob
path either holds the complete, verified content or does not exist. Blobs are
made read-only (``0o444``) as a guard against editing them by accident.

Example::

    store = LocalBlobStore(Path("/srv/regalia"))
    blob = store.put_file(Path("weights.safetensors"))
    assert store.has(blob.digest) and store.size(blob.digest) == blob.size
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from regalia.blobs.base import (
    STREAM_CHUNK,
    BlobInfo,
    ProgressSink,
    StoredBlob,
    StreamHasher,
    copy_and_hash,
    create_temp,
    discard_temp,
    fsync_dir,
    validate_digest,
    write_all,
)
from regalia.errors import (
    FileChanged,
    FileMissing,
    IntegrityError,
    InvalidRequest,
    NotFound,
    RegaliaError,
    StorageUnavailable,
)

BLOB_MODE = 0o444
_DIGEST_NAME = re.compile(r"[0-9a-f]{64}")


class LocalBlobStore:
    """:class:`~regalia.blobs.base.BlobStore` over a folder of immutable files.

    Args:
        root: the store's folder; ``blobs/`` and ``tmp/`` are created inside it.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._tmp = self.root / "tmp"

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        validate_digest(digest)
        return self._blobs / digest[:2] / digest[2:4] / digest

    def has(self, digest: str) -> bool:
        """Whether the blob is stored."""
        with self._storage_errors():
            return self.path(digest).is_file()

    def put_file(self, src: Path, *, progress: ProgressSink | None = None) -> StoredBlob:
        """Copy ``src`` into the store; return its ``StoredBlob(sha256, size, check)``.

        The copy, the SHA-256 and the BLAKE3 check run in parallel, the two
        digests over the same bytes. If a blob with the same content exists
        already, the copy is discarded and the existing blob kept.

        Raises:
            FileMissing: ``src`` does not exist.
            FileChanged: ``src`` was modified, replaced or removed meanwhile.
            InvalidRequest: ``src`` is not a readable regular file.
            StorageUnavailable: the store could not be written.
        """
        src = Path(src)
        src_fd, before = _open_source(src)
        try:
            with self._storage_errors():
                self._tmp.mkdir(parents=True, exist_ok=True)
                tmp_fd: int | None
                tmp_fd, tmp = create_temp(self._tmp, readable=True)  # hashed back as copied
                try:
                    os.fchmod(tmp_fd, BLOB_MODE)  # before the fsync, which then covers it
                    done = copy_and_hash(
                        src_fd, tmp_fd, before.st_size, progress=progress, fsync=True, check=True
                    )
                    _check_unchanged(src, src_fd, before, done.copied, done.hashed)
                    assert done.sha256 is not None and done.check is not None
                    blob = StoredBlob(done.sha256, before.st_size, done.check)
                    final = self.path(blob.digest)
                    if final.is_file():  # dedupe: same content is stored once
                        discard_temp(tmp_fd, tmp)
                        return blob
                    self._seal(tmp_fd, tmp, final, synced=True)
                    tmp_fd = None
                except BaseException:
                    discard_temp(tmp_fd, tmp)
                    raise
        finally:
            os.close(src_fd)
        return blob

    def put_stream(self, digest_expected: str | None, stream: BinaryIO) -> StoredBlob:
        """Store everything ``stream`` yields; return its ``StoredBlob(sha256, size, check)``.

        SHA-256 is computed in this thread and the BLAKE3 check in a helper
        thread, chunk by chunk, while the bytes are written.

        Raises:
            IntegrityError: the content does not hash to ``digest_expected``.
            StorageUnavailable: the store could not be written.
        """
        if digest_expected is not None:
            validate_digest(digest_expected)
        with self._storage_errors():
            self._tmp.mkdir(parents=True, exist_ok=True)
            tmp_fd: int | None
            tmp_fd, tmp = create_temp(self._tmp)
            try:
                with StreamHasher() as hasher:
                    while chunk := stream.read(STREAM_CHUNK):
                        hasher.update(chunk)
                        write_all(tmp_fd, chunk)
                    digest, check = hasher.digests()
                assert check is not None
                blob = StoredBlob(digest, hasher.size, check)
                if digest_expected is not None and digest != digest_expected:
                    raise IntegrityError(
                        f"uploaded content hashes to {digest}, expected {digest_expected}",
                        expected=digest_expected,
                        actual=digest,
                    )
                final = self.path(digest)
                if final.is_file():
                    discard_temp(tmp_fd, tmp)
                    return blob
                self._seal(tmp_fd, tmp, final, synced=False)
                tmp_fd = None
            except BaseException:
                discard_temp(tmp_fd, tmp)
                raise
        return blob

    def adopt(self, path: Path, blob: StoredBlob) -> StoredBlob:
        """Move a verified file into the store (a rename when on the same
        filesystem, else a copy); ``path`` is gone afterwards."""
        final = self.path(blob.digest)
        with self._storage_errors():
            if final.is_file():
                path.unlink(missing_ok=True)
                return blob
            fd = os.open(path, os.O_RDWR)
            try:
                os.fchmod(fd, BLOB_MODE)
                os.fsync(fd)
            finally:
                os.close(fd)
            _make_dirs(final.parent)
            try:
                os.replace(path, final)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                stored = self.put_file(path)
                path.unlink(missing_ok=True)
                return stored
            fsync_dir(final.parent)
        return blob

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for reading. Raises :class:`~regalia.errors.NotFound`."""
        path = self.path(digest)
        with self._storage_errors():
            try:
                return path.open("rb")
            except FileNotFoundError:
                raise _missing(digest) from None

    def local_path(self, digest: str) -> Path | None:
        """The blob's path. Raises :class:`~regalia.errors.NotFound` if it is not stored."""
        path = self.path(digest)
        if not self.has(digest):
            raise _missing(digest)
        return path

    def size(self, digest: str) -> int:
        """The blob's size in bytes. Raises :class:`~regalia.errors.NotFound`."""
        path = self.path(digest)
        with self._storage_errors():
            try:
                return path.stat().st_size
            except FileNotFoundError:
                raise _missing(digest) from None

    def delete(self, digest: str) -> None:
        """Remove a blob; removing a missing blob is not an error."""
        path = self.path(digest)
        with self._storage_errors():
            path.unlink(missing_ok=True)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every blob file under ``blobs/``, with its size and mtime."""
        with self._storage_errors():
            if not self._blobs.is_dir():
                return
            for first in sorted(self._blobs.iterdir()):
                for second in sorted(first.iterdir()) if first.is_dir() else ():
                    for entry in os.scandir(second) if second.is_dir() else ():
                        if not _DIGEST_NAME.fullmatch(entry.name):
                            continue
                        try:
                            st = entry.stat()
                        except FileNotFoundError:  # deleted meanwhile
                            continue
                        yield BlobInfo(entry.name, st.st_size, st.st_mtime)

    def _seal(self, tmp_fd: int, tmp: Path, final: Path, *, synced: bool) -> None:
        """Make the temp file durable and read-only, then rename it to ``final``."""
        if not synced:
            os.fchmod(tmp_fd, BLOB_MODE)
            os.fsync(tmp_fd)
        os.close(tmp_fd)
        created = _make_dirs(final.parent)
        os.replace(tmp, final)
        # Sync the new entries bottom-up only after the rename: on journaling
        # filesystems the first sync commits them all, the others are cheap.
        for directory in [final.parent, *(d.parent for d in reversed(created))]:
            fsync_dir(directory)

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """Turn OS errors from the store's own files into StorageUnavailable."""
        try:
            yield
        except RegaliaError:
            raise
        except OSError as exc:
            raise StorageUnavailable(
                f"blob store at {self.root} failed: {exc.strerror or exc}", root=str(self.root)
            ) from exc


def _make_dirs(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return those created, top first."""
    if directory.is_dir():
        return []
    created = _make_dirs(directory.parent)
    try:
        directory.mkdir()
    except FileExistsError:
        return created
    return [*created, directory]


def _missing(digest: str) -> NotFound:
    return NotFound(f"blob {digest} is not in the store", digest=digest)


def _open_source(src: Path) -> tuple[int, os.stat_result]:
    """Open a file to be stored; return its fd and its stat before reading."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FileMissing(f"file not found: {src}", path=str(src)) from None
    except OSError as exc:
        raise InvalidRequest(f"cannot read {src}: {exc.strerror}", path=str(src)) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InvalidRequest(f"not a regular file: {src}", path=str(src))
    return fd, st


def _check_unchanged(
    src: Path, src_fd: int, before: os.stat_result, copied: int, hashed: int
) -> None:
    """Raise FileChanged unless ``src`` is the same, untouched file it was before the copy."""
    try:
        after = os.stat(src)
    except FileNotFoundError:
        raise FileChanged(f"{src} was removed while being stored", path=str(src)) from None
    same = (
        _signature(after) == _signature(before)
        and _signature(os.fstat(src_fd)) == _signature(before)
        and copied == hashed == before.st_size
    )
    if not same:
        raise FileChanged(
            f"{src} changed while being stored; nothing was kept, try again", path=str(src)
        )


def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    # ctime too: tools that rewrite a file and restore its mtime cannot reset it.
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
