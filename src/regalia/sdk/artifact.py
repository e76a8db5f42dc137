"""``Artifact``: W&B's artifact object, for drafts and for logged versions.

A draft collects local files (``add_file``, ``add_dir``); logging stores each
file once by SHA-256 and records an immutable version. A logged artifact,
reached through a source path or a registry path, reads its aliases, tags,
description and metadata, saves changes to them, downloads its files, links,
unlinks and deletes.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regalia.core.names import validate_alias, validate_artifact_name, validate_file_path
from regalia.errors import FileChanged, FileMissing, InvalidRequest
from regalia.sdk.cache import fetch_to
from regalia.sdk.destinations import download_targets, refuse_conflicts
from regalia.sdk.progress import progress_bar
from regalia.service.views import FileEntry, VersionView

if TYPE_CHECKING:
    from regalia.sdk.backend import Backend


@dataclass(frozen=True)
class _LocalFile:
    path: Path
    size: int
    mtime_ns: int
    ino: int


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a logged artifact: its path, SHA-256 ``digest``, size and
    ``check`` (``"blake3:<hex>"``, what downloads verify; ``None`` for files of
    versions logged before checks existed, which are verified by SHA-256)."""

    path: str
    digest: str
    size: int
    check: str | None = None
    _artifact: Artifact | None = None

    def download(self, root: str | os.PathLike[str] | None = None) -> str:
        """Download just this file; returns its local path."""
        assert self._artifact is not None
        return self._artifact._download([self], root)[0]


class Artifact:
    """An artifact version: a draft you build, or a logged version you read.

    >>> art = Artifact("zoo_dataset", type="dataset")
    >>> art.add_file("zoo_dataset.pt", name="zoo_dataset")  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        validate_artifact_name(name)
        validate_artifact_name(type, "artifact type")
        self._name = name
        self._type = type
        self.description: str = description or ""
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.aliases: list[str] = []
        self.tags: list[str] = []
        self._files: dict[str, _LocalFile] = {}
        self._view: VersionView | None = None
        self._backend: Backend | None = None

    # -- construction from a logged version -------------------------------------------------
    @classmethod
    def _from_view(cls, backend: Backend, view: VersionView) -> Artifact:
        art = cls.__new__(cls)
        art._files = {}
        art._backend = backend
        art._set_view(view)
        return art

    def _set_view(self, view: VersionView) -> None:
        self._view = view
        self._name = view.collection.name
        self._type = view.type
        self.description = view.description
        # A deep copy: a change inside a nested value must differ from the view to be saved.
        self.metadata = copy.deepcopy(view.metadata)
        self.aliases = list(view.aliases)
        self.tags = list(view.tags)

    def _logged(self) -> tuple[Backend, VersionView]:
        if self._view is None or self._backend is None:
            raise InvalidRequest(
                f"artifact {self._name!r} is a draft: log it with run.log_artifact() first"
            )
        return self._backend, self._view

    # -- files (drafts) ------------------------------------------------------------------------
    def add_file(
        self, local_path: str | os.PathLike[str], name: str | None = None, **_: Any
    ) -> ManifestEntry:
        """Add one local file, as ``name`` (default: its file name) inside the artifact.

        Raises FileMissing if there is no such file and InvalidName for a name that is
        absolute or climbs out of the artifact (``../x``).
        """
        if self._view is not None:
            raise InvalidRequest("a logged artifact version is immutable; create a new Artifact")
        path = Path(local_path)
        target = validate_file_path(name if name is not None else path.name)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise FileMissing(f"no such file: {str(path)!r}", path=str(path)) from None
        if not path.is_file():
            raise FileMissing(f"{str(path)!r} is not a regular file", path=str(path))
        if target in self._files:
            raise InvalidRequest(f"the artifact already has a file named {target!r}")
        self._files[target] = _LocalFile(path.resolve(), st.st_size, st.st_mtime_ns, st.st_ino)
        return ManifestEntry(target, "", st.st_size)

    def add_dir(self, local_path: str | os.PathLike[str], name: str | None = None) -> None:
        """Add every file under a local folder, under ``name/`` if given."""
        root = Path(local_path)
        if not root.is_dir():
            raise FileMissing(f"no such directory: {str(root)!r}", path=str(root))
        prefix = validate_file_path(name) + "/" if name else ""
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            self.add_file(file, name=prefix + file.relative_to(root).as_posix())

    def _upload(self, backend: Backend) -> list[FileEntry]:
        """Store every file once; refuse files that changed since they were added."""
        for target, f in self._files.items():
            try:
                st = f.path.stat()
            except FileNotFoundError:
                raise FileMissing(
                    f"file {str(f.path)!r} (artifact file {target!r}) was removed before upload",
                    path=str(f.path),
                ) from None
            if (st.st_size, st.st_mtime_ns, st.st_ino) != (f.size, f.mtime_ns, f.ino):
                raise FileChanged(
                    f"file {str(f.path)!r} (artifact file {target!r}) changed after add_file; "
                    "add it again to log the new content",
                    path=str(f.path),
                )
        total = sum(f.size for f in self._files.values())
        entries = []
        targets = list(self._files)
        with progress_bar(total, f"upload {self._name}") as bar:
            blobs = backend.store_files([self._files[t].path for t in targets], bar)
            for target, blob in zip(targets, blobs, strict=True):
                f = self._files[target]
                if blob.size != f.size:
                    raise FileChanged(
                        f"file {str(f.path)!r} changed during upload", path=str(f.path)
                    )
                entries.append(FileEntry(target, blob.digest, blob.size, blob.check))
        return entries

    # -- identity ----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """``collection:vN`` once logged (W&B's form), else the draft's name."""
        return f"{self._name}:{self._view.version}" if self._view else self._name

    @property
    def type(self) -> str:
        return self._type

    @property
    def version(self) -> str:
        return self._logged()[1].version

    @property
    def id(self) -> str | None:
        return str(self._view.membership_id) if self._view else None

    @property
    def collection(self) -> str:
        return self._name

    @property
    def qualified_name(self) -> str:
        return self._logged()[1].qualified_name

    @property
    def source_name(self) -> str:
        view = self._logged()[1]
        return f"{view.source_name}:v{view.source_index}"

    @property
    def source_qualified_name(self) -> str:
        return self._logged()[1].source_qualified_name

    @property
    def entity(self) -> str:
        return self._logged()[1].source_entity

    @property
    def project(self) -> str:
        return self._logged()[1].source_project

    @property
    def is_link(self) -> bool:
        return self._view is not None and self._view.is_link

    @property
    def registry(self) -> str | None:
        return self._view.collection.registry if self._view else None

    @property
    def digest(self) -> str:
        return self._logged()[1].digest

    @property
    def size(self) -> int:
        if self._view is None:
            return sum(f.size for f in self._files.values())
        return self._view.size

    @property
    def protected_aliases(self) -> list[str]:
        return list(self._view.protected_aliases) if self._view else []

    @property
    def created_at(self) -> datetime:
        return self._logged()[1].created_at

    @property
    def updated_at(self) -> datetime:
        return self._logged()[1].updated_at

    @property
    def created(self) -> bool:
        """False when logging found identical content and returned that version (R10)."""
        return self._logged()[1].created

    @property
    def state(self) -> str:
        return "COMMITTED" if self._view else "PENDING"

    def __repr__(self) -> str:
        where = self._view.qualified_name if self._view else f"{self._name} (draft)"
        return f"<Artifact {where}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Artifact)
            and self._view is not None
            and other._view is not None
            and self._view.membership_id == other._view.membership_id
        )

    def __hash__(self) -> int:
        return hash(self._view.membership_id if self._view else id(self))

    # -- changes to a logged version ------------------------------------------------------------
    def save(self) -> None:
        """Persist changes to aliases, tags, description and metadata (R8: these belong
        to the version, so every link sees them)."""
        backend, view = self._logged()
        had_latest = any(a.lower() == "latest" for a in view.aliases)
        if any(a.lower() == "latest" for a in self.aliases) != had_latest:
            validate_alias("latest")  # raises: 'latest' is managed by the registry
        custom = [a for a in self.aliases if a.lower() != "latest"]
        tags, description, metadata = list(self.tags), self.description, dict(self.metadata)
        if [a for a in view.aliases if a.lower() != "latest"] != custom:
            view = backend.set_aliases(view.membership_id, custom)
        add = [t for t in tags if t not in view.tags]
        remove = [t for t in view.tags if t not in tags]
        desc = description if description != view.description else None
        meta = metadata if metadata != view.metadata else None
        if add or remove or desc is not None or meta is not None:
            view = backend.update_version(
                view.membership_id,
                description=desc,
                metadata=meta,
                add_tags=add,
                remove_tags=remove,
            )
        self._set_view(view)

    def wait(self, timeout: float | None = None) -> Artifact:
        """Logging is synchronous here; returns the artifact."""
        self._logged()
        return self

    def link(self, target_path: str, aliases: list[str] | None = None) -> Artifact:
        """Link this version into ``wandb-registry-R/collection`` (R1-R3)."""
        backend, view = self._logged()
        return Artifact._from_view(
            backend, backend.link(view.membership_id, target_path, list(aliases or []))
        )

    def unlink(self) -> None:
        """Remove this link from its registry collection (R9: the source stays)."""
        backend, view = self._logged()
        backend.unlink(view.membership_id)

    def delete(self, delete_aliases: bool = False) -> None:
        """Delete the source version everywhere (R9); refused while a link holds a
        protected alias (R7)."""
        backend, view = self._logged()
        backend.delete_version(view.membership_id)

    @property
    def source_artifact(self) -> Artifact:
        backend, view = self._logged()
        return Artifact._from_view(backend, backend.source_of(view.membership_id))

    @property
    def linked_artifacts(self) -> list[Artifact]:
        backend, view = self._logged()
        return [Artifact._from_view(backend, v) for v in backend.links_of(view.membership_id)]

    def logged_by(self) -> str | None:
        backend, view = self._logged()
        logged_by: str | None = backend.lineage(view.membership_id)["logged_by"]
        return logged_by

    def used_by(self) -> list[str]:
        backend, view = self._logged()
        return list(backend.lineage(view.membership_id)["used_by"])

    # -- files of a logged version -----------------------------------------------------------------
    def files(self) -> list[ManifestEntry]:
        backend, view = self._logged()
        return [
            ManifestEntry(f.path, f.digest, f.size, f.check, self)
            for f in backend.files(view.membership_id)
        ]

    @property
    def manifest(self) -> dict[str, ManifestEntry]:
        return {e.path: e for e in self.files()}

    def get_entry(self, name: str) -> ManifestEntry:
        entry = self.manifest.get(name)
        if entry is None:
            raise InvalidRequest(f"artifact {self.name!r} has no file {name!r}")
        return entry

    def get_path(self, name: str) -> ManifestEntry:
        return self.get_entry(name)

    def _default_root(self) -> Path:
        view = self._logged()[1]
        return Path("artifacts") / f"{view.collection.name}:{view.version}"

    def download(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        path_prefix: str | None = None,
        skip_cache: bool | None = None,
        overwrite: bool = True,
        **_: Any,
    ) -> str:
        """Download every file into ``root`` (default ``./artifacts/<name>:vN``),
        verifying each (by its BLAKE3 check, or by SHA-256 for files of older
        versions); returns the folder.

        With ``overwrite=False`` nothing is written if a file of the version is
        already there with other content (:class:`~regalia.errors.FileConflict`
        names them); files already there with the same content are kept as they
        are. The default overwrites them, as the W&B SDK does. Files of the
        folder that are not in the version are never touched."""
        entries = self.files()
        if path_prefix:
            entries = [e for e in entries if e.path.startswith(path_prefix)]
        self._download(entries, root, overwrite=overwrite)
        return str(Path(root) if root is not None else self._default_root())

    def _download(
        self,
        entries: list[ManifestEntry],
        root: str | os.PathLike[str] | None,
        *,
        overwrite: bool = True,
    ) -> list[str]:
        backend, view = self._logged()
        base = Path(root) if root is not None else self._default_root()
        what = f"{view.collection.name}:{view.version}"
        # Every path checked before anything is written (the manifest is the server's word).
        targets = download_targets(base, [e.path for e in entries], what=what)
        all_targets = list(targets)
        if not overwrite:
            wanted = [(e.path, e.size, e.digest, e.check) for e in entries]
            there = set(refuse_conflicts(base, targets, wanted, what=what))
            entries = [e for i, e in enumerate(entries) if i not in there]
            targets = [t for i, t in enumerate(targets) if i not in there]
        store = backend.blobs_for(view.membership_id)
        total = sum(e.size for e in entries)
        with progress_bar(total, f"download {self.name}") as bar:

            def one(pair: tuple[ManifestEntry, Path]) -> None:
                entry, dest = pair
                fetch_to(
                    dest,
                    entry.digest,
                    entry.size,
                    check=entry.check,
                    cache=backend.cache,
                    store=store,
                    progress=bar,
                )

            if len(entries) <= 1:
                for pair in zip(entries, targets, strict=True):
                    one(pair)
            else:
                with ThreadPoolExecutor(max_workers=4) as pool:
                    list(pool.map(one, zip(entries, targets, strict=True)))
        return [str(t) for t in all_targets]
