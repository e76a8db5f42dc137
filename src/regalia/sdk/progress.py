"""Progress bars for long transfers, through one wrapper.

A bar is shown on stderr for transfers of at least 8 MiB, whether or not
stderr is a terminal, unless ``REGALIA_SILENT`` is ``1`` or ``true``. Smaller
or silenced transfers get a :class:`Progress` that does nothing, so callers
never check::

    with progress_bar(size, "download model.bin") as bar:
        for chunk in chunks:
            bar.advance(len(chunk))
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress as RichBar
    from rich.progress import TaskID

SILENT_ENV = "REGALIA_SILENT"
MIN_BAR_BYTES = 8 << 20
"""Transfers smaller than this finish too fast for a bar to help."""


class Progress:
    """A progress bar that shows nothing: the base of every bar.

    ``advance`` is thread-safe and cheap; subclasses display the progress.
    """

    enabled = False

    def advance(self, n: int) -> None:
        """Record that ``n`` more bytes were transferred."""

    def close(self) -> None:
        """Finish the bar; further calls do nothing."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RichProgress(Progress):
    """A bar drawn by ``rich`` on stderr: bytes done, speed and time left."""

    enabled = True

    def __init__(self, total_bytes: int, description: str) -> None:
        # Imported here: rich costs tens of milliseconds to import.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichBar

        self._lock = threading.Lock()
        self._closed = False
        self._bar: RichBar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task: TaskID = self._bar.add_task(description, total=total_bytes)
        self._bar.start()

    def advance(self, n: int) -> None:
        """Record that ``n`` more bytes were transferred (rich locks internally)."""
        self._bar.advance(self._task, n)

    def close(self) -> None:
        """Stop refreshing and leave the finished bar on screen."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._bar.stop()


def is_silent(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``REGALIA_SILENT`` asks for no progress output."""
    env = os.environ if environ is None else environ
    return env.get(SILENT_ENV, "").strip().lower() in {"1", "true"}


def progress_bar(
    total_bytes: int, description: str, *, environ: Mapping[str, str] | None = None
) -> Progress:
    """A bar for a transfer of ``total_bytes``, or a silent one (see module doc).

    Args:
        total_bytes: size of the whole transfer.
        description: shown left of the bar, e.g. ``"upload model.bin"``.
        environ: the environment to read ``REGALIA_SILENT`` from (default ``os.environ``).
    """
    if total_bytes < MIN_BAR_BYTES or is_silent(environ):
        return Progress()
    return RichProgress(total_bytes, description)
