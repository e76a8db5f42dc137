"""Hash an upload while it arrives, so completing it costs little more than
its last part.

Parts arrive out of order (several at once), but mostly near each other. A
:class:`FrontierHasher` follows the *frontier*: it reads part 0 as soon as it
is received, then part 1, and so on, feeding SHA-256 and BLAKE3 from the page
cache, and asks the kernel to write the file to disk behind it (so the final
fsync has little left to do). ``complete`` then waits for the frontier to reach
the end instead of reading the whole file again. Any process can complete an
upload: one that has no frontier for it hashes the whole file.

A frontier is bound to one upload folder (it works through a descriptor of
the folder, not its path) and remembers the upload's id from ``meta.json``:
``complete`` uses its result only for an upload with that id, so a frontier
left over from an upload abandoned and started again never vouches for the
new one's bytes. A received part is never written again (see
:mod:`regalia.server.uploads`), so what the frontier hashed is what is stored.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from regalia.blobs.base import StoredBlob, StreamHasher

CHUNK = 1024 * 1024
IDLE_SECONDS = 600.0  # a frontier with no new part for this long gives up


class FrontierHasher(threading.Thread):
    def __init__(self, folder: Path, size: int, part_size: int) -> None:
        super().__init__(daemon=True, name=f"frontier-{folder.name[:12]}")
        self.size = size
        self.part_size = part_size
        self.part_count = max(1, -(-size // part_size))
        self.next = 0
        self.wake = threading.Event()
        self.finished = threading.Event()
        self.result: StoredBlob | None = None
        self.upload_id: str | None = None
        self._stop = False
        self._dir: int | None = None
        self._data: int | None = None
        try:
            self._dir = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            with open("meta.json", opener=self._in_dir) as f:
                self.upload_id = str(json.load(f).get("id") or "") or None
            self._data = os.open("data", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dir)
        except (OSError, ValueError):
            self._close()

    def _in_dir(self, name: str, flags: int) -> int:
        assert self._dir is not None
        return os.open(name, flags, dir_fd=self._dir)

    def _close(self) -> None:
        for fd in (self._data, self._dir):
            if fd is not None:
                os.close(fd)
        self._data = self._dir = None

    def poke(self) -> None:
        """A part arrived."""
        self.wake.set()

    def cancel(self) -> None:
        self._stop = True
        self.wake.set()

    def wait(self, timeout: float) -> StoredBlob | None:
        """The digests of the whole content once the frontier reached its end
        (None if it gave up or failed, or not yet after ``timeout``)."""
        self.wake.set()
        self.finished.wait(timeout)
        return self.result

    def run(self) -> None:
        if self._data is None or self._dir is None:
            self.finished.set()
            return
        try:
            with StreamHasher() as hasher:
                idle_since = time.monotonic()
                while self.next < self.part_count and not self._stop:
                    if not self._received(self.next):
                        if time.monotonic() - idle_since > IDLE_SECONDS:
                            return
                        self.wake.wait(0.05)
                        self.wake.clear()
                        continue
                    self._hash_part(self._data, hasher)
                    self.next += 1
                    idle_since = time.monotonic()
                    # Start writing back what arrived so far (this thread, not a request).
                    os.fdatasync(self._data)
                if self.next == self.part_count and not self._stop:
                    digest, check = hasher.digests()
                    assert check is not None
                    self.result = StoredBlob(digest, hasher.size, check)
        except OSError:
            self.result = None
        finally:
            self._close()
            self.finished.set()

    def _received(self, number: int) -> bool:
        try:
            os.stat(f"parts/{number}", dir_fd=self._dir)
        except FileNotFoundError:
            return False
        return True

    def _hash_part(self, fd: int, hasher: StreamHasher) -> None:
        offset = self.next * self.part_size
        end = min(self.size, offset + self.part_size)
        while offset < end:
            chunk = os.pread(fd, min(CHUNK, end - offset), offset)
            if not chunk:
                raise OSError("the upload file is shorter than announced")
            hasher.update(chunk)
            offset += len(chunk)
