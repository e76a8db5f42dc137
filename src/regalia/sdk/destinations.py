"""Where downloaded files go: inside the download folder, whatever the manifest says.

A manifest comes from the server (or the store), and a download writes
``root / path`` for each of its paths. The server refuses paths that are not
portable when a version is logged, but a download checks them again before it
writes anything: a forged or damaged answer, or a version logged before the
rules, must not write outside the folder on any operating system (``C:x``,
``..\\x`` and ``CON`` mean something else on Windows than on Linux).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from regalia.core.names import validate_manifest_paths
from regalia.errors import InvalidName


def download_targets(root: Path, paths: Sequence[str], *, what: str) -> list[Path]:
    """The local file for each manifest path, all checked before any is written.

    Args:
        root: the download folder (need not exist yet).
        paths: the manifest's paths, in order.
        what: the artifact, for the error message.

    Returns:
        ``root / path`` for each path, in the same order.

    Raises:
        InvalidName: a path is not a portable relative path (see
            :func:`~regalia.core.names.validate_manifest_paths`), or would end up
            outside ``root`` (through a drive, an absolute path or a symbolic
            link already in ``root``). Nothing has been written.
    """
    try:
        validate_manifest_paths(paths)
    except InvalidName as exc:
        raise InvalidName(
            f"refusing to download {what}: its manifest holds a file name that is not safe "
            f"to write: {exc.message}",
            **exc.details,
        ) from None
    base = Path(os.path.abspath(root))
    real_base = base.resolve()
    targets = []
    for path in paths:
        pure_windows = PureWindowsPath(path)
        if pure_windows.drive or pure_windows.root or PurePosixPath(path).is_absolute():
            raise _outside(what, path)
        target = base.joinpath(*path.split("/"))
        real = target.resolve()
        if real != real_base and real_base not in real.parents:
            raise _outside(what, path)
        targets.append(target)
    return targets


def _outside(what: str, path: str) -> InvalidName:
    return InvalidName(
        f"refusing to download {what}: the file {path!r} would be written outside the "
        "download folder",
        rule="file_path",
        path=path,
    )
