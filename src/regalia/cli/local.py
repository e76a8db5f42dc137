"""Commands about this machine: ``cache`` and the ``demo`` tour."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from regalia.cli.context import State, pass_state
from regalia.cli.output import human_size
from regalia.sdk.artifact import Artifact
from regalia.sdk.cache import ArtifactCache
from regalia.sdk.run import Run

# The seed's example: a dataset linked into the core Model registry.
DEMO_PROJECT = "zoo_experiment"
DEMO_ARTIFACT = "zoo_dataset"
DEMO_TARGET = "wandb-registry-Model/Zoo_Classifier_Models"
DEMO_ALIASES = ["production-us", "production-eu"]
DEMO_FILES = {
    "zoo_dataset": b"animal,hair,feathers,eggs,legs\naardvark,1,0,0,4\nchicken,0,1,1,2\n",
    "zoo_labels": b"aardvark,mammal\nchicken,bird\n",
}


@click.group()
def cache() -> None:
    """The local cache of downloaded file contents."""


@cache.command("clean")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=0),
    metavar="N",
    help="Keep the most recently used contents up to N bytes (default: empty it).",
)
@pass_state
def cache_clean(state: State, max_bytes: int | None) -> None:
    """Remove least recently used contents from the cache."""
    store = ArtifactCache(state.settings().cache_dir)
    removed, freed = store.clean(max_bytes)
    click.echo(
        f"Removed {removed} files, freed {human_size(freed)} ({freed} bytes) from {store.root}."
    )


@click.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to download into (default: ./artifacts/<name>:vN).",
)
@pass_state
def demo(state: State, root: Path | None) -> None:
    """Log, link, resolve by alias and download a small dataset, step by step."""
    backend = state.backend()
    entity = backend.actor.name
    run = Run(backend, entity, DEMO_PROJECT, job_type="demo")
    with tempfile.TemporaryDirectory(prefix="regalia-demo-") as tmp:
        art = Artifact(
            DEMO_ARTIFACT, type="dataset", description="A few rows of the UCI Zoo data set."
        )
        for name, content in DEMO_FILES.items():
            local = Path(tmp) / f"{name}.csv"
            local.write_bytes(content)
            art.add_file(local, name=name)
        run.log_artifact(art)
    how = "logged" if art.created else "identical content, reused"
    click.echo(
        f"1. {how} {art.source_qualified_name} ({len(DEMO_FILES)} files, {human_size(art.size)})"
    )

    linked = run.link_artifact(art, DEMO_TARGET, aliases=DEMO_ALIASES)
    how = "linked it as" if linked.created else "already linked as"
    click.echo(f"2. {how} {linked.qualified_name}, aliases: {', '.join(linked.aliases)}")

    path = f"{DEMO_TARGET}:{DEMO_ALIASES[0]}"
    used = run.use_artifact(path)
    click.echo(f"3. resolved {path} -> {used.qualified_name} (source {used.source_qualified_name})")

    folder = used.download(root)
    files = ", ".join(e.path for e in used.files())
    click.echo(f"4. downloaded it to {folder}: {files}")
    click.echo(f"Next: regalia ls {DEMO_TARGET}    regalia history {DEMO_TARGET}")


COMMANDS = [cache, demo]
