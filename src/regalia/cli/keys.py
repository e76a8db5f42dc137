"""``regalia key``: list, create and revoke API keys one at a time.

A key is shown whole once, when it is made; afterwards only its first
characters (its *prefix*) are known, and they name it for ``key revoke``.
"""

from __future__ import annotations

import click

from regalia.cli.admin import _print_key as print_key
from regalia.cli.context import State, pass_state
from regalia.cli.output import JSON, emit_json, table


@click.group()
def key() -> None:
    """API keys: yours, or (org admins) any user's."""


@key.command("list")
@click.option("--user", "user_name", metavar="USER", help="Another user's keys (org admins).")
@JSON
@pass_state
def key_list(state: State, user_name: str | None, as_json: bool) -> None:
    """List your API keys (or USER's), oldest first, revoked ones too.

    \b
    regalia key list
    regalia key list --user admin --json
    """
    keys = state.backend().list_api_keys(user_name)
    if as_json:
        emit_json(keys)
        return
    table(
        ["prefix", "user", "created", "revoked"],
        [(k.prefix, k.user, k.created_at, k.revoked_at) for k in keys],
        empty="(no API keys)",
    )


@key.command("create")
@click.option("--user", "user_name", metavar="USER", help="A key for another user (org admins).")
@JSON
@pass_state
def key_create(state: State, user_name: str | None, as_json: bool) -> None:
    """Make a new API key for you (or USER) and print it, this once.

    \b
    regalia key create
    """
    backend = state.backend()
    made = backend.create_api_key(user_name)
    if as_json:
        emit_json({"user": user_name or backend.actor.name, "api_key": made})
        return
    click.echo(f"Created an API key for {user_name or backend.actor.name!r}.")
    print_key(made)


@key.command("revoke")
@click.argument("prefix", metavar="KEY_PREFIX")
@pass_state
def key_revoke(state: State, prefix: str) -> None:
    """Revoke the one active API key whose prefix starts with KEY_PREFIX.

    KEY_PREFIX is the start of the key as 'regalia key list' shows it (or the
    whole key); a
    prefix that more than one active key starts with is refused. Your own keys;
    org admins may revoke any user's. The key stops working at once.

    \b
    regalia key list
    regalia key revoke rg_...
    """
    backend = state.backend()
    view = backend.revoke_api_key(prefix)
    click.echo(f"Revoked the API key {view.prefix}… of {view.user!r}.")
    current = backend.api_key
    if current and view.user == backend.actor.name and current.startswith(view.prefix):
        click.echo(
            "warning: that is the key this command used; later commands need another "
            "(REGALIA_API_KEY, --api-key or 'regalia login')",
            err=True,
        )


COMMANDS = [key]
