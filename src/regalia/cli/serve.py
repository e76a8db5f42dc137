"""``regalia server``, ``regalia worker``, ``regalia login``, ``regalia logout`` and
``regalia whoami``."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.engine import URL, make_url

from regalia.cli.context import State, pass_state
from regalia.cli.output import emit_json
from regalia.config import Settings
from regalia.sdk.backend import API_KEY_ENV, login_path, resolve, save_login

LOG_LEVEL = click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe log level written (JSON lines on stderr).",
)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port (0: any free one).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Server processes sharing the port.",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Behind a reverse proxy: trust its X-Forwarded-Proto (https makes the web "
    "UI's cookies Secure) and X-Forwarded-For, from --forwarded-allow-ips only.",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1,::1",
    show_default=True,
    metavar="IPS",
    help="Comma-separated addresses or networks of the proxies trusted with "
    "--proxy-headers ('*': any; only where nothing else can reach the port).",
)
@LOG_LEVEL
@pass_state
def server(
    state: State,
    host: str,
    port: int,
    workers: int,
    proxy_headers: bool,
    forwarded_allow_ips: str,
    log_level: str,
) -> None:
    """Serve the REST API (and its docs at /docs) and the web UI on the embedded
    store, or on PostgreSQL when REGALIA_DATABASE_URL is set. Creates the
    organization on first start and prints its admin's API key once."""
    from regalia.server.runner import Proxy, serve

    serve(
        state.settings(),
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        proxy=Proxy(headers=proxy_headers, allow_ips=forwarded_allow_ips),
    )


@click.command()
@LOG_LEVEL
@pass_state
def worker(state: State, log_level: str) -> None:
    """Send automation deliveries (Slack, webhooks) from the store's outbox until
    stopped (SIGTERM or Ctrl-C). Any number may run beside the servers: they
    share the work through leases."""
    import asyncio
    import signal

    from regalia.server.observe import configure_logging
    from regalia.service import Service
    from regalia.worker import DeliveryWorker

    configure_logging(log_level)
    svc = Service(state.settings())
    svc.check_secret_key()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await DeliveryWorker(svc).run(stop)

    try:
        asyncio.run(run())
    finally:
        svc.close()


@click.command()
@click.option("--base-url", required=True, metavar="URL", help="The server, e.g. http://host:8080.")
@click.option(
    "--api-key",
    "key",
    metavar="KEY",
    help="Your API key (asked for, hidden, if not given).",
)
@pass_state
def login(state: State, base_url: str, key: str | None) -> None:
    """Check an API key against a server and remember both for the SDK and CLI."""
    from regalia.sdk.http import HttpBackend

    key = key or state.api_key or click.prompt("API key", hide_input=True)
    settings = state.settings()
    backend = HttpBackend(base_url, key, settings=settings)
    try:
        who = backend.actor
    finally:
        backend.close()
    path = save_login(settings, base_url, key)
    click.echo(
        f"Logged in to {base_url} as {who.name} (org {who.org_name}, org role {who.org_role}); "
        f"saved in {path}."
    )


@click.command()
@pass_state
def logout(state: State) -> None:
    """Forget the server and key saved by ``regalia login``."""
    path = login_path(state.settings())
    if path.exists():
        path.unlink()
        click.echo(f"Logged out (removed {path}).")
    else:
        click.echo("Not logged in.")


KEY_SOURCES = {"argument": "--api-key", API_KEY_ENV: API_KEY_ENV, "saved login": "saved login"}


def database_shown(settings: Settings) -> str:
    """The store's database as a person reads it: the SQLite file, or the
    PostgreSQL URL without its password."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}"
    shown = URL.create(
        url.drivername,
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query={k: v for k, v in url.query.items() if k.lower() != "password"},
    )
    return "PostgreSQL " + shown.render_as_string(hide_password=False)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_state
def whoami(state: State, as_json: bool) -> None:
    """Who you act as (user, organization, org role, teams), where (a server, and
    whether REGALIA_BASE_URL or a saved login chose it, or the local store), and
    where the API key came from."""
    settings = state.settings()
    target = resolve(settings, api_key=state.api_key or None)
    who = state.backend(notice=False).actor
    key_from = KEY_SOURCES.get(target.key_from or "", "local owner")
    where: dict[str, Any]
    if target.base_url is not None:
        how = (
            f"saved login in {target.login_file}"
            if target.login_file is not None
            else target.url_from
        )
        where = {
            "kind": "server",
            "url": target.base_url,
            "chosen_by": target.url_from,
            "login_file": str(target.login_file) if target.login_file else None,
        }
        where_text = f"server {target.base_url} ({how})"
    else:
        db = database_shown(settings)
        where = {"kind": "local", "home": str(settings.home), "database": db}
        where_text = f"local store {settings.home} ({db})"
    if as_json:
        emit_json(
            {
                "user": who.name,
                "kind": who.kind,
                "org": who.org_name,
                "org_role": who.org_role,
                "teams": list(who.team_names),
                "where": where,
                "key_from": key_from,
            }
        )
        return
    kind = "service account" if who.kind == "service" else "user"
    click.echo(f"{kind}: {who.name}")
    click.echo(f"org: {who.org_name} (org role: {who.org_role})")
    click.echo(f"teams: {', '.join(who.team_names) or '(none)'}")
    click.echo(f"where: {where_text}")
    click.echo(f"key: {key_from}")


COMMANDS = [server, worker, login, logout, whoami]
