"""``regalia log``: upload local files and folders as a new version (the SDK's
``run.log_artifact``, from the shell)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from regalia.cli.context import CliError, State, pass_state
from regalia.cli.output import JSON, emit_json, human_size
from regalia.core.names import validate_entity_name
from regalia.sdk.artifact import Artifact
from regalia.sdk.run import DEFAULT_PROJECT, Run


def _metadata(text: str | None) -> dict[str, Any] | None:
    """``--metadata`` as a JSON object (``@FILE`` reads it from a file)."""
    if text is None:
        return None
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"--metadata is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CliError(f"--metadata must be a JSON object ({{...}}), not {type(value).__name__}")
    return value


@click.command("log")
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    metavar="PATH...",
    type=click.Path(exists=True, path_type=Path),
)
@click.option(
    "--name",
    metavar="NAME",
    help="The artifact's name (default: the file or folder name, when one PATH is given).",
)
@click.option("--type", "type_", metavar="TYPE", required=True, help="e.g. model, dataset.")
@click.option("--description", help="What this version is.")
@click.option("--metadata", metavar="JSON|@FILE", help="A JSON object stored with the version.")
@click.option(
    "--alias",
    "-a",
    "aliases",
    multiple=True,
    metavar="ALIAS",
    help="An alias for the new version (repeatable).",
)
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="A tag (repeatable).")
@click.option(
    "--entity",
    metavar="ENTITY",
    help="Who owns the project (default: REGALIA_ENTITY, else you).",
)
@click.option(
    "--project",
    metavar="PROJECT",
    help=f"The project (default: REGALIA_PROJECT, else {DEFAULT_PROJECT!r}).",
)
@JSON
@pass_state
def log_command(
    state: State,
    paths: tuple[Path, ...],
    name: str | None,
    type_: str,
    description: str | None,
    metadata: str | None,
    aliases: tuple[str, ...],
    tags: tuple[str, ...],
    entity: str | None,
    project: str | None,
    as_json: bool,
) -> None:
    """Log files and folders as a new version of ENTITY/PROJECT/NAME.

    A file is stored under its file name; a folder's files keep their paths
    inside it. Identical content returns the existing version instead of a new
    one. Transfers of 8 MiB or more show a progress bar on stderr (unless
    REGALIA_SILENT=1).

    \b
    regalia log model.pt --name zoo_model --type model -a candidate
    regalia link admin/uncategorized/zoo_model:candidate wandb-registry-model/zoo

    \b
    A folder, with metadata, printing the version as JSON:
    regalia log ./checkpoints --type model --metadata '{"epochs": 10}' --json
    """
    if name is None:
        if len(paths) > 1:
            raise CliError("give --name NAME when logging more than one PATH")
        name = paths[0].resolve().name.replace(" ", "_")
    art = Artifact(name, type=type_, description=description, metadata=_metadata(metadata))
    for path in paths:
        if path.is_dir():
            if not any(p.is_file() for p in path.rglob("*")):
                raise CliError(f"nothing to log: the folder {str(path)!r} holds no files")
            art.add_dir(path)
        else:
            art.add_file(path)
    backend = state.backend()
    owner = entity or os.environ.get("REGALIA_ENTITY") or backend.actor.name
    proj = project or os.environ.get("REGALIA_PROJECT") or DEFAULT_PROJECT
    validate_entity_name(owner, "entity name")
    validate_entity_name(proj, "project name")
    run = Run(backend, owner, proj, job_type="regalia-log")
    run.log_artifact(art, aliases=list(aliases), tags=list(tags))
    _, view = art._logged()
    if as_json:
        emit_json(view)
        return
    how = "Logged" if view.created else "Identical content, reused"
    click.echo(
        f"{how} {view.qualified_name} ({view.file_count} files, {human_size(view.size)}; "
        f"aliases: {', '.join(view.aliases) or 'none'})"
    )
    if not view.created and (description is not None or metadata is not None):
        click.echo(
            f"note: {view.source_qualified_name} keeps the description and metadata "
            "it was logged with",
            err=True,
        )


COMMANDS = [log_command]
