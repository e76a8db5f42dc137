"""Hash an upload while it arrives, so completing it costs little more than
its last part.

Parts arrive out of order (several at once), but mostly near each other. A
:class:`FrontierHasher` follows the *frontier*: it reads part 0 as soon as it
is received, then part 1, and so on, feeding SHA-256 and BLAKE3 from the page
cache, and asks the kernel to write the file to disk behind it (so the final
fsync has little left to do). ``complete`` then waits for the frontier to reach
the end instead of reading the whole file again. Any process can complete an
upload: one that has no frontier for it hashes the whole file.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from regalia.blobs.base import StoredBlob, StreamHasher

CHUNK = 1024 * 1024
IDLE_SECONDS = 600.0  # a frontier with no new part for this long gives up


class FrontierHasher(threading.Thread):
    def __init__(self, data: Path, parts: Path, size: int, part_size: int) -> None:
        super().__init__(daemon=True, name=f"frontier-{data.parent.name[:12]}")
        self.data = data
        self.parts = parts
        self.size = size
        self.part_size = part_size
        self.part_count = max(1, -(-size // part_size))
        self.next = 0
        self.wake = threading.Event()
        self.finished = threading.Event()
        self.result: StoredBlob | None = None
        self._stop = False

    def poke(self) -> None:
        """A part arrived."""
        self.wake.set()

    def cancel(self) -> None:
        self._stop = True
        self.wake.set()

    def wait(self, timeout: float) -> StoredBlob | None:
        """The digests of the whole content once the frontier reached its end
        (None if it gave up or failed: the caller hashes the file itself)."""
        self.wake.set()
        self.finished.wait(timeout)
        return self.result

    def run(self) -> None:
        try:
            fd = os.open(self.data, os.O_RDONLY)
        except OSError:
            self.finished.set()
            return
        try:
            with StreamHasher() as hasher:
                idle_since = time.monotonic()
                while self.next < self.part_count and not self._stop:
                    if not (self.parts / str(self.next)).exists():
                        if time.monotonic() - idle_since > IDLE_SECONDS:
                            return
                        self.wake.wait(0.05)
                        self.wake.clear()
                        continue
                    self._hash_part(fd, hasher)
                    self.next += 1
                    idle_since = time.monotonic()
                    # Start writing back what arrived so far (this thread, not a request).
                    os.fdatasync(fd)
                if self.next == self.part_count and not self._stop:
                    digest, check = hasher.digests()
                    assert check is not None
                    self.result = StoredBlob(digest, hasher.size, check)
        except OSError:
            self.result = None
        finally:
            os.close(fd)
            self.finished.set()

    def _hash_part(self, fd: int, hasher: StreamHasher) -> None:
        offset = self.next * self.part_size
        end = min(self.size, offset + self.part_size)
        while offset < end:
            chunk = os.pread(fd, min(CHUNK, end - offset), offset)
            if not chunk:
                raise OSError("the upload file is shorter than announced")
            hasher.update(chunk)
            offset += len(chunk)
