"""The ``regalia`` command.

It talks to Regalia through the SDK's in-process backend (never the store)::

    regalia init                                  # prints an owner API key
    regalia registry create vision --types model
    regalia link me/proj/net:v3 wandb-registry-vision/net --alias staging
    regalia get wandb-registry-vision/net:staging

Expected failures (a :class:`~regalia.errors.RegaliaError`, a file that cannot
be read or written) print one ``error: <message>`` line on stderr and exit
with code 1; usage errors exit with code 2, as click does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from regalia.cli import admin, automations, keys, local, serve, upload, versions
from regalia.cli.context import CliError, State
from regalia.errors import RegaliaError


class RegaliaGroup(click.Group):
    """The root group: turns expected errors into one clean line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RegaliaError as exc:
            raise CliError(exc.message) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise CliError(f"{exc.strerror or exc}{where}") from None


@click.group(cls=RegaliaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Where Regalia keeps its data (sets REGALIA_HOME; default ~/.regalia).",
)
@click.option(
    "--api-key",
    metavar="KEY",
    help="Act as the user of this API key (default: REGALIA_API_KEY, else the local owner).",
)
@click.version_option(package_name="regalia", prog_name="regalia")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, api_key: str | None) -> None:
    """Regalia: a registry for versioned ML artifacts."""
    state = State(home=home, api_key=api_key)
    ctx.obj = state
    ctx.call_on_close(state.close)


for _command in [
    *admin.COMMANDS,
    *keys.COMMANDS,
    *upload.COMMANDS,
    *versions.COMMANDS,
    *automations.COMMANDS,
    *local.COMMANDS,
    *serve.COMMANDS,
]:
    cli.add_command(_command)


def main() -> None:
    """The console-script entry point."""
    cli(prog_name="regalia")
