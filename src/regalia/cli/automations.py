"""``regalia automation``: Slack messages and webhooks on registry events (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import click

from regalia.cli.context import CliError, State, pass_state, registry_name
from regalia.cli.output import cell, emit_json, table
from regalia.core.automations import EventType
from regalia.core.targets import parse_target, resolves_now
from regalia.service.views import AutomationView, DeliveryView

JSON = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
EVENTS = click.Choice([e.value for e in EventType], case_sensitive=False)


@click.group()
def automation() -> None:
    """Automations: tell Slack or call a webhook when a registry changes."""


def _scope(a: AutomationView) -> str:
    return f"{a.registry}/{a.collection}" if a.collection else f"{a.registry} (all)"


def _filter(a: AutomationView) -> str:
    return f"{a.filter_kind}={a.filter_value}" if a.filter_kind else "-"


def _template(value: str | None) -> str | None:
    """``@path`` reads the template from a file."""
    if value is None or not value.startswith("@"):
        return value
    return Path(value[1:]).read_text()


def _secrets(items: tuple[str, ...]) -> dict[str, str]:
    """``NAME=VALUE``, or ``NAME`` alone to take the value from the environment
    variable of that name (so it stays out of the shell history)."""
    import os

    found: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in os.environ:
                raise CliError(f"--secret {name}: no '=VALUE' and no environment variable {name}")
            value = os.environ[name]
        found[name] = value
    return found


@automation.command("create")
@click.argument("reg", metavar="REGISTRY")
@click.argument("name")
@click.option("--event", type=EVENTS, required=True, help="The event that fires it.")
@click.option("--slack", "slack_url", metavar="URL", help="Post to this Slack incoming webhook.")
@click.option("--webhook", "webhook_url", metavar="URL", help="POST a JSON payload to this URL.")
@click.option("--collection", help="Only this collection (default: every one, later ones too).")
@click.option("--alias", help="Filter: linked with this alias (LINK_ARTIFACT).")
@click.option("--alias-regex", metavar="REGEX", help="Filter: the alias matches (alias events).")
@click.option("--tag-regex", metavar="REGEX", help="Filter: the tag matches (ADD_ARTIFACT_TAG).")
@click.option("--access-token", metavar="TOKEN", help="Webhook: sent as Authorization: Bearer.")
@click.option("--signing-secret", metavar="SECRET", help="Webhook: signs each body (HMAC-SHA256).")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME[=VALUE]",
    help="Webhook: a secret usable as ${NAME} in the template (value from $NAME if no '=').",
)
@click.option(
    "--payload-template",
    metavar="JSON|@FILE",
    help="Webhook: the JSON body, with ${variables} (default: every variable).",
)
@click.option("--description", default="", help="What it is for.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@JSON
@pass_state
def automation_create(
    state: State,
    reg: str,
    name: str,
    event: str,
    slack_url: str | None,
    webhook_url: str | None,
    collection: str | None,
    alias: str | None,
    alias_regex: str | None,
    tag_regex: str | None,
    access_token: str | None,
    signing_secret: str | None,
    secrets: tuple[str, ...],
    payload_template: str | None,
    description: str,
    disabled: bool,
    as_json: bool,
) -> None:
    """Create automation NAME on REGISTRY (members and admins).

    \b
    regalia automation create model prod-alert --event ADD_ARTIFACT_ALIAS \\
        --alias-regex '^prod' --slack https://hooks.slack.com/services/...
    """
    if bool(slack_url) == bool(webhook_url):
        raise CliError("give exactly one of --slack URL or --webhook URL")
    given = (("alias", alias), ("alias_regex", alias_regex), ("tag_regex", tag_regex))
    filters = [(k, v) for k, v in given if v]
    if len(filters) > 1:
        raise CliError("give at most one of --alias, --alias-regex, --tag-regex")
    kind, value = filters[0] if filters else (None, None)
    view = state.backend().create_automation(
        registry=registry_name(reg),
        name=name,
        event=event.upper(),
        action="slack" if slack_url else "webhook",
        target=slack_url or webhook_url or "",
        collection=collection,
        filter_kind=kind,
        filter_value=value,
        access_token=access_token,
        signing_secret=signing_secret,
        secrets=_secrets(secrets),
        payload_template=_template(payload_template),
        description=description,
        enabled=not disabled,
    )
    target = slack_url or webhook_url or ""
    if not resolves_now(target):
        click.echo(
            f"note: the target host {parse_target(target).host!r} does not resolve now; "
            "deliveries will fail (and be retried) until it does",
            err=True,
        )
    if as_json:
        emit_json(view)
        return
    state_word = "enabled" if view.enabled else "disabled"
    click.echo(
        f"Created automation {view.id} {view.name!r} on {_scope(view)}: "
        f"{view.event} -> {view.action} {view.target} ({state_word})."
    )


@automation.command("list")
@click.argument("reg", metavar="REGISTRY")
@JSON
@pass_state
def automation_list(state: State, reg: str, as_json: bool) -> None:
    """List REGISTRY's automations (secrets are never shown)."""
    found = state.backend().automations(registry_name(reg))
    if as_json:
        emit_json(found)
        return
    table(
        ["id", "name", "scope", "event", "filter", "action", "target", "enabled"],
        [
            (a.id, a.name, _scope(a), a.event, _filter(a), a.action, a.target, a.enabled)
            for a in found
        ],
        empty="(no automations)",
    )


@automation.command("show")
@click.argument("automation_id", metavar="ID", type=int)
@JSON
@pass_state
def automation_show(state: State, automation_id: int, as_json: bool) -> None:
    """Show automation ID (secrets only by name)."""
    a = state.backend().get_automation(automation_id)
    if as_json:
        emit_json(a)
        return
    secrets = [
        *(["access token"] if a.has_access_token else []),
        *(["signing secret"] if a.has_signing_secret else []),
        *a.secret_names,
    ]
    rows = [
        ("id", a.id),
        ("name", a.name),
        ("description", a.description),
        ("scope", _scope(a)),
        ("event", a.event),
        ("filter", _filter(a)),
        ("action", a.action),
        ("target", a.target),
        ("secrets", secrets),
        ("enabled", a.enabled),
        ("created", f"{cell(a.created_at)} by {a.created_by or '-'}"),
        ("updated", a.updated_at),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':13} {cell(value)}")
    if a.payload_template is not None:
        click.echo(f"payload template:\n{a.payload_template}")


def _set_enabled(state: State, automation_id: int, enabled: bool) -> None:
    view = state.backend().set_automation_enabled(automation_id, enabled)
    click.echo(f"Automation {view.id} {view.name!r} is {'enabled' if enabled else 'disabled'}.")


@automation.command("enable")
@click.argument("automation_id", metavar="ID", type=int)
@pass_state
def automation_enable(state: State, automation_id: int) -> None:
    """Enable automation ID."""
    _set_enabled(state, automation_id, True)


@automation.command("disable")
@click.argument("automation_id", metavar="ID", type=int)
@pass_state
def automation_disable(state: State, automation_id: int) -> None:
    """Disable automation ID (queued deliveries are still sent)."""
    _set_enabled(state, automation_id, False)


@automation.command("rm")
@click.argument("automation_id", metavar="ID", type=int)
@pass_state
def automation_rm(state: State, automation_id: int) -> None:
    """Delete automation ID, its history and its unsent deliveries."""
    state.backend().delete_automation(automation_id)
    click.echo(f"Deleted automation {automation_id}.")


def _print_deliveries(found: list[DeliveryView], payloads: bool) -> None:
    table(
        ["delivery", "created", "event", "status", "tries", "code", "error"],
        [
            (
                d.id,
                d.created_at,
                d.event + (" (test)" if d.is_test else ""),
                d.status,
                d.attempts,
                d.response_code,
                (d.error or "")[:60],
            )
            for d in found
        ],
        empty="(no deliveries)",
    )
    if payloads:
        for d in found:
            click.echo(f"\n{d.id}:\n{d.payload or '(not rendered yet)'}")


WAIT = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    metavar="SECONDS",
    help="Wait up to SECONDS for the outcome; exit 1 unless the delivery succeeded.",
)


def _outcome(state: State, view: DeliveryView, wait: float) -> None:
    """With ``--wait``: poll the delivery until it is settled or ``wait``
    seconds passed, print it, and fail (exit 1) unless it succeeded."""
    import time

    if not wait:
        return
    backend = state.backend()
    deadline = time.monotonic() + wait
    while view.status == "pending" and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        view = backend.get_delivery(view.id)
    _print_deliveries([view], payloads=False)
    if view.status == "succeeded":
        return
    last = (
        f"last status {view.status}, {view.attempts} tries, "
        f"code {view.response_code if view.response_code is not None else 'none'}"
    )
    if view.error:
        last += f": {' '.join(view.error.split())[:200]}"
    if view.status == "pending":
        idle = (
            "; nothing tried it yet: 'regalia server' or 'regalia worker' sends deliveries"
            if view.attempts == 0
            else ""
        )
        raise CliError(f"delivery {view.id} did not finish within {wait:g} seconds ({last}){idle}")
    raise CliError(f"delivery {view.id} failed ({last})")


@automation.command("test")
@click.argument("automation_id", metavar="ID", type=int)
@WAIT
@pass_state
def automation_test(state: State, automation_id: int, wait: float) -> None:
    """Send a sample event through automation ID.

    With --wait the exit code tells how it went: 0 only when the delivery
    succeeded, 1 when it failed or did not finish in time.

    \b
    regalia automation test 1 --wait 10
    """
    view = state.backend().test_automation(automation_id)
    click.echo(f"Queued test delivery {view.id}.")
    _outcome(state, view, wait)


@automation.command("history")
@click.argument("automation_id", metavar="ID", type=int)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--payloads", is_flag=True, help="Also print each payload as sent.")
@JSON
@pass_state
def automation_history(
    state: State, automation_id: int, limit: int, payloads: bool, as_json: bool
) -> None:
    """Automation ID's deliveries, newest first."""
    found = state.backend().deliveries(automation_id, limit=limit)
    if as_json:
        emit_json(found)
    else:
        _print_deliveries(found, payloads)


@automation.command("attempts")
@click.argument("delivery_id", metavar="DELIVERY")
@JSON
@pass_state
def automation_attempts(state: State, delivery_id: str, as_json: bool) -> None:
    """Each try of DELIVERY: when, how long, the code, an excerpt of the answer."""
    found = state.backend().delivery_attempts(delivery_id)
    if as_json:
        emit_json(found)
        return
    table(
        ["try", "started", "ms", "code", "answer or error"],
        [
            (a.attempt, a.started_at, a.duration_ms, a.response_code, a.excerpt[:80]) for a in found
        ],  # fmt: skip
        empty="(not tried yet)",
    )


@automation.command("redeliver")
@click.argument("delivery_id", metavar="DELIVERY")
@WAIT
@pass_state
def automation_redeliver(state: State, delivery_id: str, wait: float) -> None:
    """Send DELIVERY's event again (as a new delivery with its own id).

    With --wait, exit 0 only when the new delivery succeeded.
    """
    view = state.backend().redeliver(delivery_id)
    click.echo(f"Queued delivery {view.id} (again: {delivery_id}).")
    _outcome(state, view, wait)


COMMANDS = [automation]
