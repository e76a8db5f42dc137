"""Resumable uploads, kept on the server's disk until complete.

An upload belongs to the user who began it (SPEC §7): it lives in
``<root>/<user id>/<digest>/``, so another user's upload of the same content
is a separate upload that cannot touch this one, and every request names only
the caller's own uploads (another's is "not found", like one that does not
exist). The folder holds ``meta.json`` (size, part size, a random id),
``data``, a file of the final size that parts are written into at their
offsets, and one marker per received part (``parts/<n>``, holding the part's
SHA-256).

Each part declares its SHA-256 (``X-Regalia-Part-Sha256``) and is hashed as it
arrives; it counts as received only if it matches. A received part is final:
sending it again is checked and answered, but never rewrites its bytes, and
one request at a time may write a part (a lock per part, which ends with the
process that held it). So once every part is received nothing writes to
``data`` any more, and ``complete`` hashes exactly the bytes it stores
(SHA-256 and BLAKE3, or takes the hash :mod:`~regalia.server.frontier`
computed as the parts arrived), before the blob store takes them.

Work inside an upload folder goes through a descriptor of the folder, so a
request still running on an upload that was abandoned meanwhile can only touch
the abandoned folder, never a new upload at the same path.

Files left by a crash are removed by :meth:`UploadArea.sweep`: a whole
``PUT``'s temporary file (``.put-*``) or a ``complete``'s (``.complete-*``)
untouched for :data:`TEMP_MAX_AGE`, an upload folder untouched for
:data:`UPLOAD_MAX_AGE`. A live transfer is never swept: its files' mtimes move
as bytes arrive, and ``complete`` touches its file while it hashes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regalia.blobs.base import StoredBlob, StreamHasher, _HashRelay, validate_digest, write_all
from regalia.errors import (
    Conflict,
    ContentMismatch,
    InvalidRequest,
    NotFound,
    StorageUnavailable,
    TooLarge,
)
from regalia.server.frontier import FrontierHasher

READ_CHUNK = 1024 * 1024
COMPLETE_WAIT_SECONDS = 600.0
MAX_PARTS = 10_000
UPLOAD_MAX_AGE = 7 * 24 * 3600.0
"""Seconds an upload folder may stay untouched before the sweep removes it."""
TEMP_MAX_AGE = 15 * 60.0
"""Seconds a whole PUT's or a complete's temporary file may stay untouched."""
TOUCH_SECONDS = 60.0
"""How often ``complete`` refreshes the mtime of the file it is hashing."""
PART_SHA256_HEADER = "X-Regalia-Part-Sha256"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

Key = tuple[int, str]  # (owner's user id, digest)


@dataclass(frozen=True)
class UploadState:
    digest: str
    size: int
    part_size: int
    part_count: int
    parts_received: list[int]
    upload_id: str = ""


def part_sha256(value: str | None) -> str:
    """The declared SHA-256 of a part, lower-cased; InvalidRequest if missing or malformed."""
    if value is None or not _SHA256.fullmatch(value):
        raise InvalidRequest(
            f"each part must declare its SHA-256 in the {PART_SHA256_HEADER} header "
            f"(64 hex digits); got {value!r}",
            header=PART_SHA256_HEADER,
        )
    return value.lower()


class UploadArea:
    """Upload folders under ``root`` (same filesystem as the blob store, so a
    completed upload is renamed into it, not copied)."""

    def __init__(self, root: Path, part_size: int) -> None:
        if part_size < 1:
            raise InvalidRequest("the upload part size must be positive")
        self.root = Path(root)
        self.part_size = part_size
        self._frontiers: dict[Key, FrontierHasher] = {}
        self._lock = threading.Lock()

    # -- folders -------------------------------------------------------------------------
    def _dir(self, owner: int, digest: str) -> Path:
        return self.root / str(int(owner)) / validate_digest(digest)

    @contextlib.contextmanager
    def _opened(self, owner: int, digest: str) -> Iterator[int]:
        """A descriptor of the owner's upload folder (NotFound if there is none)."""
        try:
            fd = os.open(self._dir(owner, digest), _DIR_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise _no_upload(digest) from None
        try:
            yield fd
        finally:
            os.close(fd)

    def _frontier(self, owner: int, state: UploadState) -> FrontierHasher:
        """The thread hashing this upload in this process (started on first use)."""
        key = (owner, state.digest)
        with self._lock:
            found = self._frontiers.get(key)
            stale = found is not None and (
                found.upload_id != state.upload_id
                or (found.finished.is_set() and found.result is None)
            )
            if found is None or stale:
                if found is not None:
                    found.cancel()
                found = FrontierHasher(self._dir(owner, state.digest), state.size, state.part_size)
                self._frontiers[key] = found
                found.start()
            return found

    def _drop_frontier(self, key: Key) -> FrontierHasher | None:
        with self._lock:
            found = self._frontiers.pop(key, None)
        if found is not None:
            found.cancel()
        return found

    # -- the upload's life ---------------------------------------------------------------
    def start(self, owner: int, digest: str, size: int) -> UploadState:
        """Open (or resume) ``owner``'s upload of ``size`` bytes hashing to ``digest``."""
        if size < 0:
            raise InvalidRequest("an upload's size cannot be negative", size=size)
        folder = self._dir(owner, digest)
        if (folder / "meta.json").is_file():
            try:
                state = self.state(owner, digest)
            except NotFound:
                state = None  # abandoned meanwhile
            if state is not None and state.size == size:
                return state
            self.discard(owner, digest)  # a different size for the same digest: start over
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        try:
            (folder / "parts").mkdir(parents=True, exist_ok=True)
            (folder / "locks").mkdir(exist_ok=True)
            with (folder / "data").open("ab") as data:
                data.truncate(size)
            tmp = folder / f"meta.{uuid.uuid4().hex}"
            meta = {"size": size, "part_size": part_size, "id": uuid.uuid4().hex}
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, folder / "meta.json")
        except (OverflowError, OSError) as exc:
            if isinstance(exc, OverflowError) or exc.errno in (errno.EFBIG, errno.EINVAL):
                self.discard(owner, digest)
                raise TooLarge(
                    f"an upload of {size} bytes is larger than this server's storage can hold",
                    size=size,
                ) from None
            raise StorageUnavailable(f"cannot start the upload: {exc.strerror or exc}") from exc
        return self.state(owner, digest)

    def state(self, owner: int, digest: str) -> UploadState:
        """Which parts of ``owner``'s upload arrived (NotFound if there is no such upload)."""
        with self._opened(owner, digest) as fd:
            return _read_state(fd, digest)

    async def write_part(
        self, owner: int, digest: str, number: int, body: AsyncIterator[bytes], sha256: str | None
    ) -> int:
        """Write part ``number`` of ``owner``'s upload from a streamed body, hashed
        as it arrives; it counts as received only if it hashes to ``sha256``.

        Raises:
            InvalidRequest: no or a malformed ``sha256``, a part out of range, too few bytes.
            TooLarge: more bytes than the part has.
            ContentMismatch: the bytes do not hash to ``sha256`` (the part is not received).
            Conflict: the part was received already with other bytes.
            StorageUnavailable: another request is sending this part right now.
            NotFound: the caller has no such upload.
        """
        expected = part_sha256(sha256)
        with self._opened(owner, digest) as folder:
            state = _read_state(folder, digest)
            if not 0 <= number < state.part_count:
                raise InvalidRequest(
                    f"part {number} is out of range: the upload has {state.part_count} parts",
                    part=number,
                )
            start = number * state.part_size
            length = min(state.part_size, state.size - start)
            with _part_lock(folder, digest, number):
                received = _marker(folder, number)
                if received is not None:
                    # Received parts are final: the resend is checked, never written.
                    got = await _receive(body, length, number, None, start)
                    _verify_part(number, got, expected)
                    if received != expected:
                        raise Conflict(
                            f"part {number} was received already with SHA-256 {received}; "
                            "abandon the upload (DELETE) to send other bytes",
                            part=number,
                        )
                    return length
                try:
                    fd = os.open("data", os.O_WRONLY | os.O_CLOEXEC, dir_fd=folder)
                except FileNotFoundError:
                    raise _no_upload(digest) from None
                try:
                    got = await _receive(body, length, number, fd, start)
                finally:
                    os.close(fd)
                _verify_part(number, got, expected)
                try:
                    tmp = f"parts/.{number}.{uuid.uuid4().hex}"
                    marker = os.open(
                        tmp,
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                        0o600,
                        dir_fd=folder,
                    )
                    with os.fdopen(marker, "w") as f:
                        f.write(got)
                    os.replace(tmp, f"parts/{number}", src_dir_fd=folder, dst_dir_fd=folder)
                except FileNotFoundError:
                    raise _no_upload(digest) from None
        self._frontier(owner, state).poke()
        return length

    def complete(self, owner: int, digest: str) -> tuple[Path, StoredBlob]:
        """Check every part arrived, hash the whole file, and hand it over.

        Returns the file (now outside the upload folder) and its digests; the
        caller moves it into the blob store. Raises ContentMismatch (and starts
        the upload over) if the bytes do not hash to ``digest``.
        """
        with self._opened(owner, digest) as folder:
            state = _read_state(folder, digest)
            missing = sorted(set(range(state.part_count)) - set(state.parts_received))
            if missing:
                raise InvalidRequest(
                    f"the upload lacks parts {missing[:10]}", missing_parts=missing[:100]
                )
            taken = self.root / f".complete-{int(owner)}-{digest}-{uuid.uuid4().hex}"
            try:
                os.replace("data", taken, src_dir_fd=folder)
            except FileNotFoundError:
                raise _no_upload(digest) from None
        os.utime(taken)  # a fresh file to the sweep, however long ago the parts arrived
        with self._lock:
            frontier = self._frontiers.pop((owner, digest), None)
        try:
            blob = None
            if frontier is not None:
                if frontier.upload_id == state.upload_id:
                    blob = _wait_touching(frontier, taken)
                frontier.cancel()
            if blob is None or blob.size != state.size:
                blob = hash_file(taken)  # no (or another, or a failed) frontier here
        except BaseException:
            taken.unlink(missing_ok=True)
            raise
        self.discard(owner, digest)
        if blob.digest != digest:
            taken.unlink(missing_ok=True)
            raise ContentMismatch(
                f"the uploaded content hashes to {blob.digest}, expected {digest}; "
                "the upload starts over",
                expected=digest,
                actual=blob.digest,
            )
        return taken, blob

    def completing(self, owner: int, digest: str) -> bool:
        """Whether a request is hashing ``owner``'s upload to store it right now."""
        return any(self.root.glob(f".complete-{int(owner)}-{validate_digest(digest)}-*"))

    def discard(self, owner: int, digest: str) -> bool:
        """Abandon ``owner``'s upload; returns whether there was one."""
        self._drop_frontier((owner, digest))
        folder = self._dir(owner, digest)
        existed = folder.is_dir()
        shutil.rmtree(folder, ignore_errors=True)
        return existed

    def temp_path(self) -> Path:
        """A new path for a whole PUT's temporary file (swept if left behind)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".put-{uuid.uuid4().hex}"

    # -- the sweep -----------------------------------------------------------------------
    def sweep(
        self,
        *,
        uploads_older_than: float = UPLOAD_MAX_AGE,
        temps_older_than: float = TEMP_MAX_AGE,
        now: float | None = None,
    ) -> int:
        """Remove what crashed or abandoned transfers left; returns how many entries.

        A ``.put-*`` or ``.complete-*`` file untouched for ``temps_older_than``
        seconds, an upload folder untouched for ``uploads_older_than`` (its
        newest file counts), and folders of the layout before uploads had
        owners (``<root>/<digest>``: nothing can complete them) once untouched
        for ``temps_older_than``.
        """
        if not self.root.is_dir():
            return 0
        now = time.time() if now is None else now
        removed = 0
        for entry in self.root.iterdir():
            name = entry.name
            if name.startswith((".put-", ".complete-")):
                if _newest_mtime(entry) < now - temps_older_than:
                    entry.unlink(missing_ok=True)
                    removed += 1
            elif name.isdigit() and entry.is_dir():
                removed += self._sweep_owner(entry, now - uploads_older_than)
                if _newest_mtime(entry) < now - temps_older_than:
                    with contextlib.suppress(OSError):
                        entry.rmdir()  # only if empty
            elif (
                len(name) == 64  # an owner-less upload of old
                and entry.is_dir()
                and _newest_upload_mtime(entry) < now - temps_older_than
            ):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def _sweep_owner(self, folder: Path, cutoff: float) -> int:
        removed = 0
        try:
            uploads = list(folder.iterdir())
        except FileNotFoundError:
            return 0
        for upload in uploads:
            if _newest_upload_mtime(upload) < cutoff:
                self._drop_frontier((int(folder.name), upload.name))
                shutil.rmtree(upload, ignore_errors=True)
                removed += 1
        return removed


def _no_upload(digest: str) -> NotFound:
    return NotFound(f"no upload of yours in progress for {digest}", digest=digest)


def _read_state(folder: int, digest: str) -> UploadState:
    try:
        with open("meta.json", opener=lambda n, f: os.open(n, f, dir_fd=folder)) as f:
            meta = json.load(f)
        parts_fd = os.open("parts", _DIR_FLAGS, dir_fd=folder)
        try:
            parts = sorted(int(p) for p in os.listdir(parts_fd) if p.isdigit())
        finally:
            os.close(parts_fd)
    except FileNotFoundError:
        raise _no_upload(digest) from None
    size, part_size = int(meta["size"]), int(meta["part_size"])
    count = max(1, -(-size // part_size))
    return UploadState(digest, size, part_size, count, parts, str(meta.get("id", "")))


def _marker(folder: int, number: int) -> str | None:
    """The SHA-256 a received part was verified against (None: not received)."""
    try:
        with open(f"parts/{number}", opener=lambda n, f: os.open(n, f, dir_fd=folder)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _part_lock(folder: int, digest: str, number: int) -> Iterator[None]:
    """One request at a time writes a part (a lock the kernel drops with its holder)."""
    try:
        fd = os.open(f"locks/{number}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=folder)
    except FileNotFoundError:
        raise _no_upload(digest) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageUnavailable(
                f"part {number} of this upload is being sent by another request; retry shortly",
                part=number,
            ) from None
        yield
    finally:
        os.close(fd)


async def _receive(
    body: AsyncIterator[bytes], length: int, number: int, fd: int | None, start: int
) -> str:
    """Read a part's body (writing it at ``start`` of ``fd`` if given); its SHA-256."""
    hasher = hashlib.sha256()
    written = 0
    async for chunk in body:
        if written + len(chunk) > length:
            raise TooLarge(f"part {number} has {length} bytes; more were sent", part=number)
        hasher.update(chunk)
        if fd is not None:
            write_all(fd, chunk, start + written)
        written += len(chunk)
    if written != length:
        raise InvalidRequest(
            f"part {number} has {length} bytes; {written} were received", part=number
        )
    return hasher.hexdigest()


def _verify_part(number: int, got: str, expected: str) -> None:
    if got != expected:
        raise ContentMismatch(
            f"part {number} hashes to {got}; its {PART_SHA256_HEADER} says {expected}",
            part=number,
        )


def _wait_touching(frontier: FrontierHasher, path: Path) -> StoredBlob | None:
    """The frontier's result, touching ``path`` meanwhile so the sweep leaves it."""
    deadline = time.monotonic() + COMPLETE_WAIT_SECONDS
    while not frontier.finished.is_set() and time.monotonic() < deadline:
        frontier.wait(min(TOUCH_SECONDS, max(0.0, deadline - time.monotonic())))
        _touch(path)
    return frontier.result


def _touch(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)


def _newest_mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")  # gone meanwhile: nothing to remove


def _newest_upload_mtime(folder: Path) -> float:
    """When an upload folder was last touched: a part written (``data``), a
    part received (``parts/``), the upload started or resumed (``meta.json``)."""
    times = [_newest_mtime(folder / n) for n in ("data", "parts", "meta.json")]
    found = [t for t in times if t != float("inf")]
    return max(found) if found else _newest_mtime(folder)


def hash_file(path: Path) -> StoredBlob:
    """SHA-256 and BLAKE3 of a file, read once (touching it now and then, so
    that the sweep never takes a file being hashed)."""
    touched = time.monotonic()
    with StreamHasher() as hasher, path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            hasher.update(chunk)
            if time.monotonic() - touched > TOUCH_SECONDS:
                _touch(path)
                touched = time.monotonic()
        digest, check = hasher.digests()
    assert check is not None
    return StoredBlob(digest, hasher.size, check)


async def receive_file(
    path: Path, body: AsyncIterator[bytes], limit: int | None, *, also: Any = None
) -> StoredBlob:
    """Write a streamed body to ``path``, hashing it on the way (each write
    moves the file's mtime, so the sweep leaves a live transfer alone).
    ``also``: one more ``hashlib`` hasher fed the same bytes, in a helper thread
    of its own (the `wandb` client's MD5); read it once this returns."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    extra = _HashRelay(also) if also is not None else None
    if extra is not None:
        extra.start()
    try:
        with StreamHasher() as hasher:
            async for chunk in body:
                if limit is not None and hasher.size + len(chunk) > limit:
                    raise TooLarge(
                        f"the body is larger than {limit} bytes; use a resumable upload",
                        limit=limit,
                    )
                hasher.update(chunk)
                if extra is not None:
                    extra.feed(chunk if isinstance(chunk, bytes) else bytes(chunk))
                write_all(fd, chunk)
            digest, check = hasher.digests()
        if extra is not None:
            extra.finish()
            if extra.error is not None:
                raise extra.error
    except BaseException:
        if extra is not None:
            extra.finish()
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    assert check is not None
    return StoredBlob(digest, hasher.size, check)
