"""Resumable uploads, kept on the server's disk until complete.

An upload is keyed by the content's SHA-256 (two clients uploading the same
content share it: their bytes are the same). Its folder holds ``data``, a file
of the final size that parts are written into at their offsets, and one
marker per received part (``parts/<n>``, written after the part verified).
A client that lost its connection asks which parts arrived and sends only the
others. ``complete`` hashes the whole file (SHA-256 and BLAKE3) before the
blob store takes it, so what is stored is what the client hashed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from regalia.blobs.base import StoredBlob, StreamHasher, validate_digest, write_all
from regalia.errors import ContentMismatch, InvalidRequest, NotFound, StorageUnavailable, TooLarge
from regalia.server.frontier import FrontierHasher

READ_CHUNK = 1024 * 1024
COMPLETE_WAIT_SECONDS = 600.0
MAX_PARTS = 10_000


@dataclass(frozen=True)
class UploadState:
    digest: str
    size: int
    part_size: int
    part_count: int
    parts_received: list[int]


class UploadArea:
    """Upload folders under ``root`` (same filesystem as the blob store, so a
    completed upload is renamed into it, not copied)."""

    def __init__(self, root: Path, part_size: int) -> None:
        if part_size < 1:
            raise InvalidRequest("the upload part size must be positive")
        self.root = Path(root)
        self.part_size = part_size
        self._frontiers: dict[str, FrontierHasher] = {}
        self._lock = threading.Lock()

    def _frontier(self, state: UploadState) -> FrontierHasher:
        """The thread hashing this upload in this process (started on first use)."""
        with self._lock:
            found = self._frontiers.get(state.digest)
            if found is None or (found.finished.is_set() and found.result is None):
                folder = self._dir(state.digest)
                found = FrontierHasher(
                    folder / "data", folder / "parts", state.size, state.part_size
                )
                self._frontiers[state.digest] = found
                found.start()
            return found

    def _drop_frontier(self, digest: str) -> FrontierHasher | None:
        with self._lock:
            found = self._frontiers.pop(digest, None)
        if found is not None:
            found.cancel()
        return found

    def _dir(self, digest: str) -> Path:
        return self.root / validate_digest(digest)

    def start(self, digest: str, size: int) -> UploadState:
        """Open (or resume) the upload of ``size`` bytes hashing to ``digest``."""
        if size < 0:
            raise InvalidRequest("an upload's size cannot be negative", size=size)
        folder = self._dir(digest)
        meta = folder / "meta.json"
        if meta.is_file():
            state = self.state(digest)
            if state.size == size:
                return state
            self.discard(digest)  # a different size for the same digest: start over
        part_size = max(self.part_size, -(-size // MAX_PARTS))
        try:
            (folder / "parts").mkdir(parents=True, exist_ok=True)
            with (folder / "data").open("ab") as data:
                data.truncate(size)
            tmp = folder / f"meta.{uuid.uuid4().hex}"
            tmp.write_text(json.dumps({"size": size, "part_size": part_size}))
            os.replace(tmp, meta)
        except (OverflowError, OSError) as exc:
            if isinstance(exc, OverflowError) or exc.errno in (errno.EFBIG, errno.EINVAL):
                self.discard(digest)
                raise TooLarge(
                    f"an upload of {size} bytes is larger than this server's storage can hold",
                    size=size,
                ) from None
            raise StorageUnavailable(f"cannot start the upload: {exc.strerror or exc}") from exc
        return self.state(digest)

    def state(self, digest: str) -> UploadState:
        folder = self._dir(digest)
        try:
            meta = json.loads((folder / "meta.json").read_text())
            parts = sorted(int(p.name) for p in (folder / "parts").iterdir() if p.name.isdigit())
        except FileNotFoundError:
            raise NotFound(f"no upload in progress for {digest}", digest=digest) from None
        size, part_size = int(meta["size"]), int(meta["part_size"])
        count = max(1, -(-size // part_size))
        return UploadState(digest, size, part_size, count, parts)

    async def write_part(
        self, digest: str, number: int, body: AsyncIterator[bytes], sha256: str | None
    ) -> int:
        """Write part ``number`` from a streamed body; verify it against ``sha256``."""
        state = self.state(digest)
        if not 0 <= number < state.part_count:
            raise InvalidRequest(
                f"part {number} is out of range: the upload has {state.part_count} parts",
                part=number,
            )
        start = number * state.part_size
        length = min(state.part_size, state.size - start)
        # Only a part whose hash the client sent is hashed here (the whole content
        # is hashed by the frontier anyway).
        hasher = hashlib.sha256() if sha256 is not None else None
        written = 0
        folder = self._dir(digest)
        # The part's bytes are about to change: it is not received until they verify.
        (folder / "parts" / str(number)).unlink(missing_ok=True)
        try:
            fd = os.open(folder / "data", os.O_WRONLY)
        except FileNotFoundError:
            raise NotFound(f"no upload in progress for {digest}", digest=digest) from None
        try:
            async for chunk in body:
                if written + len(chunk) > length:
                    raise TooLarge(f"part {number} has {length} bytes; more were sent", part=number)
                if hasher is not None:
                    hasher.update(chunk)
                write_all(fd, chunk, start + written)
                written += len(chunk)
        finally:
            os.close(fd)
        if written != length:
            raise InvalidRequest(
                f"part {number} has {length} bytes; {written} were received", part=number
            )
        got = hasher.hexdigest() if hasher is not None else ""
        if sha256 is not None and got != sha256.lower():
            raise ContentMismatch(
                f"part {number} hashes to {got}, the client sent {sha256}", part=number
            )
        marker = folder / "parts" / str(number)
        tmp = marker.with_name(f".{number}.{uuid.uuid4().hex}")
        tmp.write_text(got)
        os.replace(tmp, marker)
        self._frontier(state).poke()
        return written

    def complete(self, digest: str) -> tuple[Path, StoredBlob]:
        """Check every part arrived, hash the whole file, and hand it over.

        Returns the file (now outside the upload folder) and its digests; the
        caller moves it into the blob store. Raises IntegrityError (and starts
        the upload over) if the bytes do not hash to ``digest``.
        """
        state = self.state(digest)
        missing = sorted(set(range(state.part_count)) - set(state.parts_received))
        if missing:
            raise InvalidRequest(
                f"the upload lacks parts {missing[:10]}", missing_parts=missing[:100]
            )
        folder = self._dir(digest)
        taken = self.root / f".complete-{digest}-{uuid.uuid4().hex}"
        try:
            os.replace(folder / "data", taken)
        except FileNotFoundError:
            raise NotFound(f"no upload in progress for {digest}", digest=digest) from None
        with self._lock:
            frontier = self._frontiers.pop(digest, None)
        try:
            blob = None
            if frontier is not None:
                blob = frontier.wait(COMPLETE_WAIT_SECONDS)
                frontier.cancel()
            if blob is None or blob.size != state.size:
                blob = hash_file(taken)  # no (or a failed) frontier in this process
        except BaseException:
            taken.unlink(missing_ok=True)
            raise
        self.discard(digest)
        if blob.digest != digest:
            taken.unlink(missing_ok=True)
            raise ContentMismatch(
                f"the uploaded content hashes to {blob.digest}, expected {digest}; "
                "the upload starts over",
                expected=digest,
                actual=blob.digest,
            )
        return taken, blob

    def completing(self, digest: str) -> bool:
        """Whether a request is hashing this upload to store it right now."""
        return any(self.root.glob(f".complete-{validate_digest(digest)}-*"))

    def sweep(self, max_age_seconds: float) -> int:
        """Remove uploads and temporary files untouched for ``max_age_seconds``
        (abandoned by their clients); returns how many were removed."""
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - max_age_seconds
        removed = 0
        for entry in self.root.iterdir():
            try:
                touched = [entry.stat().st_mtime]
                if entry.is_dir():
                    touched += [p.stat().st_mtime for p in entry.rglob("*")]
            except FileNotFoundError:
                continue  # completed or swept meanwhile
            if max(touched) >= cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        return removed

    def temp_path(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f".put-{uuid.uuid4().hex}"

    def discard(self, digest: str) -> None:
        self._drop_frontier(digest)
        shutil.rmtree(self._dir(digest), ignore_errors=True)


def hash_file(path: Path) -> StoredBlob:
    """SHA-256 and BLAKE3 of a file, read once."""
    with StreamHasher() as hasher, path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            hasher.update(chunk)
        digest, check = hasher.digests()
    assert check is not None
    return StoredBlob(digest, hasher.size, check)


async def receive_file(path: Path, body: AsyncIterator[bytes], limit: int | None) -> StoredBlob:
    """Write a streamed body to ``path``, hashing it on the way."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with StreamHasher() as hasher:
            async for chunk in body:
                if limit is not None and hasher.size + len(chunk) > limit:
                    raise TooLarge(
                        f"the body is larger than {limit} bytes; use a resumable upload",
                        limit=limit,
                    )
                hasher.update(chunk)
                write_all(fd, chunk)
            digest, check = hasher.digests()
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    assert check is not None
    return StoredBlob(digest, hasher.size, check)
