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
from regalia.errors import FileConflict, InvalidName
from regalia.sdk.transfer import hash_local

SHOWN_CONFLICTS = 5


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


def refuse_conflicts(
    root: Path,
    targets: Sequence[Path],
    wanted: Sequence[tuple[str, int, str, str | None]],
    *,
    what: str,
) -> list[int]:
    """Refuse to download where files of other content are in the way.

    Args:
        root: the download folder.
        targets: the local file of each manifest file (from :func:`download_targets`).
        wanted: ``(path, size, sha256, check)`` of each manifest file, in the same order.
        what: the artifact, for the error message.

    Returns:
        The indices of the files already there with the version's content
        (compared by size, then by hash): they need not be written again.

    Raises:
        FileConflict: some destination holds other content, or is a folder (or
            lies under a file); names up to :data:`SHOWN_CONFLICTS` of them.
            Nothing has been written.
    """
    root = Path(os.path.abspath(root))
    same: list[int] = []
    conflicts: list[str] = []
    for i, (target, (path, size, digest, check)) in enumerate(zip(targets, wanted, strict=True)):
        state = _state_of(target, root, size, digest, check)
        if state == "same":
            same.append(i)
        elif state != "absent":
            conflicts.append(path)
    if conflicts:
        shown = ", ".join(conflicts[:SHOWN_CONFLICTS])
        more = len(conflicts) - SHOWN_CONFLICTS
        if more > 0:
            shown += f" and {more} more"
        count = f"{len(conflicts)} file{'s' if len(conflicts) != 1 else ''}"
        raise FileConflict(
            f"refusing to download {what} into {root}: {count} there differ from the "
            f"version's ({shown}); nothing was written",
            root=str(root),
            paths=conflicts[:SHOWN_CONFLICTS],
            count=len(conflicts),
        )
    return same


def _state_of(target: Path, root: Path, size: int, digest: str, check: str | None) -> str:
    """``absent``, ``same`` (this content), or ``other`` (other content, a folder, a
    file where a folder must be)."""
    for parent in target.relative_to(root).parents:
        folder = root / parent
        if folder.exists() and not folder.is_dir():
            return "other"
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return "absent"
    except NotADirectoryError:
        return "other"
    if not os.path.isfile(target) or st.st_size != size:
        return "other"
    found = hash_local(target)  # SHA-256 and BLAKE3 in one read, as for an upload
    same = found.check == check if check is not None else found.digest == digest
    return "same" if same else "other"
