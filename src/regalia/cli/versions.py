"""Commands on versions: ``link``, ``alias``, ``get``, ``ls``, ``history``.

PATH is what the SDK accepts: a registry path
``[org/]wandb-registry-{registry}/{collection}[:{ref}]`` or a source path
``entity/project/name[:{ref}]``; no ref means ``latest``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from regalia.cli.context import CliError, State, pass_state
from regalia.cli.output import emit_json, human_size, table
from regalia.core.names import REGISTRY_PREFIX, validate_artifact_name, validate_registry_name
from regalia.errors import FileConflict, InvalidName
from regalia.sdk.artifact import Artifact
from regalia.service.views import CollectionView, Page, VersionView

if TYPE_CHECKING:
    from regalia.sdk.backend import Backend

JSON = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
PAGE = 200


@dataclass(frozen=True)
class Listing:
    """``wandb-registry-R`` (collection None) or ``wandb-registry-R/C`` with no ref."""

    registry: str
    collection: str | None


def parse_listing(path: str) -> Listing | None:
    """The registry or collection a ref-less registry path names; None for a version path."""
    text = path.strip()
    if ":" in text:
        return None
    parts = text.split("/")
    at = next((i for i, p in enumerate(parts) if p.startswith(REGISTRY_PREFIX)), None)
    if at is None or at > 1 or len(parts) > at + 2:
        return None
    reg = validate_registry_name(parts[at][len(REGISTRY_PREFIX) :])
    if len(parts) == at + 1:
        return Listing(reg, None)
    return Listing(reg, validate_artifact_name(parts[at + 1], "collection name"))


def _describe(view: VersionView) -> str:
    aliases = ", ".join(view.aliases) or "none"
    return f"{view.qualified_name} (aliases: {aliases})"


# -- link and aliases ---------------------------------------------------------------------------


@click.command()
@click.argument("path")
@click.argument("target")
@click.option(
    "--alias",
    "-a",
    "aliases",
    multiple=True,
    metavar="ALIAS",
    help="An alias to give the linked version (repeatable).",
)
@pass_state
def link(state: State, path: str, target: str, aliases: tuple[str, ...]) -> None:
    """Link the version at PATH into TARGET (wandb-registry-R/collection).

    The collection is created if missing; linking a version that is already
    there keeps its number and applies the aliases.
    """
    backend = state.backend()
    source = backend.resolve(path)
    linked = backend.link(source.membership_id, target, list(aliases))
    verb = "Linked" if linked.created else "Already linked:"
    click.echo(f"{verb} {source.source_qualified_name} -> {_describe(linked)}")


@click.command()
@click.argument("path")
@pass_state
def unlink(state: State, path: str) -> None:
    """Remove the registry version at PATH from its collection.

    PATH is a registry path with a version or alias
    (wandb-registry-R/collection:v1, ...:staging). The source version and its
    other links stay; the aliases the link held go with it. Registry members
    and admins may unlink; a link holding a protected alias only admins.

    \b
    regalia unlink wandb-registry-model/zoo:v0
    """
    backend = state.backend()
    view = backend.resolve(path)
    if not view.is_link:
        raise CliError(
            f"{view.qualified_name} is a source version, not a registry link: unlink takes "
            f"{REGISTRY_PREFIX}<registry>/<collection>:<version or alias>"
        )
    backend.unlink(view.membership_id)
    held = [a for a in view.aliases if a != "latest"]
    gone = f"; its aliases {', '.join(held)} went with it" if held else ""
    click.echo(
        f"Unlinked {view.qualified_name} (the source {view.source_qualified_name} stays){gone}."
    )


@click.group()
def alias() -> None:
    """Add or remove aliases on a version."""


@alias.command("add")
@click.argument("path")
@click.argument("names", nargs=-1, required=True, metavar="ALIAS...")
@pass_state
def alias_add(state: State, path: str, names: tuple[str, ...]) -> None:
    """Give the version at PATH the aliases (moving them from other versions)."""
    backend = state.backend()
    view = backend.add_aliases(backend.resolve(path).membership_id, list(names))
    click.echo(_describe(view))


@alias.command("rm")
@click.argument("path")
@click.argument("names", nargs=-1, required=True, metavar="ALIAS...")
@pass_state
def alias_rm(state: State, path: str, names: tuple[str, ...]) -> None:
    """Remove the aliases from the version at PATH."""
    backend = state.backend()
    view = backend.remove_aliases(backend.resolve(path).membership_id, list(names))
    click.echo(_describe(view))


# -- get ----------------------------------------------------------------------------------------


@click.command()
@click.argument("path")
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to download into (default: ./artifacts/<name>:vN).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite files of the folder whose content differs from the version's.",
)
@pass_state
def get(state: State, path: str, root: Path | None, force: bool) -> None:
    """Download the files of the version at PATH; print the folder.

    Refuses, writing nothing, when the folder holds a file of the version with
    other content (unless --force); files already there with the same content
    are kept, and files that are not in the version are never touched."""
    backend = state.backend()
    view = backend.resolve(path)
    try:
        folder = Artifact._from_view(backend, view).download(root, overwrite=force)
    except FileConflict as exc:
        raise CliError(
            f"{exc.message}: use --force to overwrite them, or --root DIR to download elsewhere"
        ) from None
    click.echo(f"{view.qualified_name}: {view.file_count} files, {human_size(view.size)}", err=True)
    click.echo(folder)


# -- ls -----------------------------------------------------------------------------------------


@click.command()
@click.argument("path", required=False)
@JSON
@pass_state
def ls(state: State, path: str | None, as_json: bool) -> None:
    """List registries (no PATH), a registry's collections (wandb-registry-R),
    a collection's versions (wandb-registry-R/C) or a version's files (with :ref)."""
    backend = state.backend()
    listing = parse_listing(path) if path else None
    if path is None:
        _ls_registries(backend, as_json)
    elif listing is not None and listing.collection is None:
        _ls_collections(backend, listing.registry, as_json)
    elif listing is not None and listing.collection is not None:
        _ls_versions(backend, listing.registry, listing.collection, as_json)
    else:
        _ls_files(backend, path, as_json)


def _ls_registries(backend: Backend, as_json: bool) -> None:
    regs = backend.list_registries()
    if as_json:
        emit_json(regs)
        return
    table(
        ["registry", "visibility", "your role", "collections", "description"],
        [
            (r.full_name, r.visibility, r.role, r.collection_count, _short(r.description))
            for r in regs
        ],
    )


def _ls_collections(backend: Backend, registry: str, as_json: bool) -> None:
    colls = _collections(backend, registry)
    if as_json:
        emit_json(colls)
        return
    table(
        ["collection", "type", "versions", "tags", "updated", "description"],
        [
            (c.path, c.type, c.version_count, c.tags, c.updated_at, _short(c.description))
            for c in colls
        ],
        empty="(no collections)",
    )


def _ls_versions(backend: Backend, registry: str, collection: str, as_json: bool) -> None:
    versions = _versions(backend, registry, collection)
    if as_json:
        emit_json(versions)
        return
    table(
        ["version", "aliases", "source", "size", "files", "created", "by"],
        [
            (
                v.version,
                v.aliases,
                v.source_qualified_name,
                human_size(v.size),
                v.file_count,
                v.created_at,
                v.created_by,
            )
            for v in versions
        ],
        empty="(no versions)",
    )


def _ls_files(backend: Backend, path: str, as_json: bool) -> None:
    view = backend.resolve(path)
    files = backend.files(view.membership_id)
    if as_json:
        emit_json({"version": view, "files": files})
        return
    click.echo(f"{_describe(view)}: {len(files)} files, {human_size(view.size)}")
    table(["name", "size", "digest"], [(f.path, human_size(f.size), f.digest) for f in files])


def _short(text: str, width: int = 48) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _collections(backend: Backend, registry: str) -> list[CollectionView]:
    """The collections of a registry, by name."""
    reg = backend.get_registry(registry)  # 404 for a registry the caller may not see
    return _all_pages(
        lambda cursor: backend.find_collections(
            registry_filter={"name": reg.name}, order="name", cursor=cursor, limit=PAGE
        )
    )


def _versions(backend: Backend, registry: str, collection: str) -> list[VersionView]:
    """The linked versions of a collection, newest (highest number) first."""
    coll = backend.get_collection(registry, collection)  # 404 if missing
    return _all_pages(
        lambda cursor: backend.find_versions(
            registry_filter={"name": coll.registry},
            collection_filter={"name": coll.name},
            order="-version",
            cursor=cursor,
            limit=PAGE,
        )
    )


def _all_pages(fetch: Callable[[str | None], Page]) -> list[Any]:
    """Every item of a cursor-paged listing."""
    items: list[Any] = []
    cursor = None
    while True:
        page = fetch(cursor)
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


# -- history ------------------------------------------------------------------------------------


@click.command()
@click.argument("path")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="How many events, newest first.",
)
@click.option("--alias", "alias_name", metavar="ALIAS", help="Only events about this alias.")
@JSON
@pass_state
def history(state: State, path: str, limit: int, alias_name: str | None, as_json: bool) -> None:
    """Who linked, unlinked, moved which alias, when: in wandb-registry-R[/collection]."""
    listing = parse_listing(path)
    if listing is None:
        raise InvalidName(
            f"history needs a registry path '{REGISTRY_PREFIX}<registry>[/<collection>]' "
            f"without a version, not {path!r}",
            rule="registry_path",
        )
    page = state.backend().history(
        listing.registry, listing.collection, alias=alias_name, limit=limit
    )
    if as_json:
        emit_json(page.items)
        return
    table(
        ["time", "actor", "action", "collection", "version", "alias", "details"],
        [
            (
                e.created_at,
                e.actor,
                e.action,
                e.collection,
                f"v{e.version_index}" if e.version_index is not None else None,
                e.alias,
                _details(e.details),
            )
            for e in page.items
        ],
        empty="(no history)",
    )
    if page.next_cursor is not None:
        click.echo(f"(showing the newest {limit} events; use --limit for more)", err=True)


def _details(details: dict[str, Any]) -> str:
    shown = {k: v for k, v in details.items() if v is not None and k != "collection"}
    return " ".join(f"{k}={v}" for k, v in shown.items())


COMMANDS = [link, unlink, alias, get, ls, history]
