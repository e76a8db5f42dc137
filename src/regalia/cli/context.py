"""What every command shares: where Regalia lives, who acts, and how errors print.

The root group stores a :class:`State` in click's context; a command asks it
for the SDK backend, which is built on first use (so ``--help`` and ``cache
clean`` never open the database) and closed when the command ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from regalia.config import Settings
from regalia.core.names import REGISTRY_PREFIX
from regalia.sdk.backend import connect

if TYPE_CHECKING:
    from regalia.sdk.backend import Backend


class CliError(click.ClickException):
    """An expected failure: printed as one ``error: <message>`` line, exit code 1."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        # One line, whatever the message: a multi-line error reads like a crash.
        super().__init__(" ".join(message.split()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


@dataclass
class State:
    """The root options, and the backend built from them on first use."""

    home: Path | None = None
    api_key: str | None = None
    _backend: Backend | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """Settings from the environment, with ``--home`` in place of ``REGALIA_HOME``."""
        return Settings.from_env(home=self.home)

    def backend(self, *, notice: bool = True) -> Backend:
        """The SDK backend acting as ``--api-key`` / ``REGALIA_API_KEY``, else the local
        owner (``notice``: say on stderr when that is the local store, see ``connect``)."""
        if self._backend is None:
            self._backend = connect(self.settings(), api_key=self.api_key or None, notice=notice)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


pass_state = click.make_pass_decorator(State)


def registry_name(value: str) -> str:
    """A registry given as ``model``, ``wandb-registry-model`` or ``org/wandb-registry-model``."""
    text = value.strip()
    head, sep, tail = text.partition("/")
    if sep and tail.startswith(REGISTRY_PREFIX) and "/" not in tail:
        text = tail
    return text[len(REGISTRY_PREFIX) :] if text.startswith(REGISTRY_PREFIX) else text
