"""Commands that manage the organization: ``init``, ``user``, ``team``, ``registry``,
``gc``."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import click

from regalia.cli.context import CliError, State, pass_state, registry_name
from regalia.cli.output import emit_json, table
from regalia.config import Settings, parse_duration
from regalia.core.names import validate_entity_name
from regalia.core.roles import OrgRole, RegistryRole, TeamRole, Visibility
from regalia.errors import InvalidRequest, NotFound, TeamNotFound, UserNotFound
from regalia.sdk.backend import BASE_URL_ENV, resolve
from regalia.service.views import MemberView, TeamView

ORG_ROLES = click.Choice([r.value for r in OrgRole])
REGISTRY_ROLES = click.Choice([r.value for r in RegistryRole])
TEAM_ROLES = click.Choice([r.value for r in TeamRole])
VISIBILITIES = click.Choice([v.value for v in Visibility])
JSON = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def _print_key(key: str) -> None:
    click.echo(f"API key (shown once, keep it secret): {key}")
    click.echo("Use it with:")
    click.echo(f"  export REGALIA_API_KEY={key}")


# -- init --------------------------------------------------------------------------------


@click.command()
@click.option(
    "--org",
    "org_name",
    metavar="NAME",
    help="Organization name (default: REGALIA_ORG or 'regalia').",
)
@pass_state
def init(state: State, org_name: str | None) -> None:
    """Create the organization if missing and print a new API key for its owner.

    Safe to run again: an existing organization is kept, and its owner gets one
    more key. It acts as the local owner, so it works without (or despite a
    stale) REGALIA_API_KEY: whoever can open the database is trusted here.
    """
    settings = state.settings()
    _refuse_init_beside_a_server(settings)
    if org_name is not None:
        validate_entity_name(org_name, "organization name")
        settings = replace(settings, org_name=org_name)
    # The service directly, not the SDK backend: the backend would authenticate
    # REGALIA_API_KEY first, and init must work before any key exists.
    from regalia.service import Service

    service = Service(settings)
    try:
        owner = service.ensure_org(settings.org_name)
        key = service.create_api_key(owner)
    finally:
        service.close()
    click.echo(
        f"Organization {owner.org_name!r} is ready (owner: {owner.name}, home: {settings.home})."
    )
    _print_key(key)
    if org_name is not None and org_name != state.settings().org_name:
        click.echo(f"  export REGALIA_ORG={org_name}")


def _refuse_init_beside_a_server(settings: Settings) -> None:
    """``init`` makes a local organization: refused while the SDK and CLI point at a
    server, whose key it would not be (the user meant to join that server)."""
    target = resolve(settings)
    if target.base_url is None:
        return
    if target.url_from == BASE_URL_ENV:
        why, instead = f"{BASE_URL_ENV} is set", f"unset {BASE_URL_ENV} first"
    else:
        why, instead = f"a login is saved in {target.login_file}", "run 'regalia logout' first"
    raise CliError(
        f"regalia init would create a local organization in {settings.home}, not on "
        f"{target.base_url} ({why}): for a key on that server, ask its admin for one (they "
        f"run 'regalia key create' there), then 'regalia login --base-url {target.base_url} "
        f"--api-key KEY'; to use a local store instead, {instead}"
    )


# -- users ---------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Users and service accounts of the organization."""


@user.command("create")
@click.argument("name")
@click.option(
    "--org-role",
    type=ORG_ROLES,
    default="member",
    show_default=True,
    help="Role in the organization.",
)
@click.option("--service-account", is_flag=True, help="A non-human identity (e.g. for CI).")
@JSON
@pass_state
def user_create(
    state: State, name: str, org_role: str, service_account: bool, as_json: bool
) -> None:
    """Create a user (org admins only) and print its API key."""
    view, key = state.backend().create_user(
        name, org_role=org_role, service_account=service_account
    )
    if as_json:
        emit_json({"user": view, "api_key": key})
        return
    kind = "service account" if service_account else "user"
    click.echo(f"Created {kind} {view.name!r} (org role: {view.org_role}).")
    if key:
        _print_key(key)


@user.command("list")
@JSON
@pass_state
def user_list(state: State, as_json: bool) -> None:
    """List the organization's users and service accounts."""
    users = state.backend().list_users()
    if as_json:
        emit_json(users)
        return
    table(
        ["name", "kind", "org role", "teams"],
        [(u.name, u.kind, u.org_role, u.teams) for u in users],
    )


# -- teams ---------------------------------------------------------------------------------


@click.group()
def team() -> None:
    """Teams: groups of users that own projects and hold registry roles."""


def _members_line(view: TeamView) -> str:
    return ", ".join(f"{m.name} ({m.role})" for m in view.members) or "-"


@team.command("create")
@click.argument("name")
@pass_state
def team_create(state: State, name: str) -> None:
    """Create a team; you become its first member and its admin."""
    view = state.backend().create_team(name)
    click.echo(f"Created team {view.name!r} (members: {_members_line(view)}).")


@team.command("list")
@JSON
@pass_state
def team_list(state: State, as_json: bool) -> None:
    """List the organization's teams, their members and team roles."""
    teams = state.backend().list_teams()
    if as_json:
        emit_json(teams)
        return
    table(
        ["name", "admins", "members"],
        [(t.name, t.admins, [m.name for m in t.members]) for t in teams],
        empty="(no teams)",
    )


@team.command("members")
@click.argument("team_name", metavar="TEAM")
@JSON
@pass_state
def team_members(state: State, team_name: str, as_json: bool) -> None:
    """List the members of TEAM with their team roles."""
    view = state.backend().get_team(team_name)
    if as_json:
        emit_json(view.members)
        return
    table(["name", "team role"], [(m.name, m.role) for m in view.members], empty="(no members)")


@team.command("add")
@click.argument("team_name", metavar="TEAM")
@click.argument("user_name", metavar="USER")
@click.option("--admin", is_flag=True, help="Make USER a team admin (default: a plain member).")
@pass_state
def team_add(state: State, team_name: str, user_name: str, admin: bool) -> None:
    """Add USER to TEAM (org admins and team admins only).

    USER gets every registry role TEAM holds. A team admin may add, remove and
    change the role of members; a plain member may not. With --admin an existing
    member becomes a team admin.
    """
    view = state.backend().add_team_member(team_name, user_name, role="admin" if admin else None)
    click.echo(f"Added {user_name!r} to team {view.name!r} (members: {_members_line(view)}).")


@team.command("role")
@click.argument("team_name", metavar="TEAM")
@click.argument("user_name", metavar="USER")
@click.argument("role", type=TEAM_ROLES)
@pass_state
def team_role(state: State, team_name: str, user_name: str, role: str) -> None:
    """Make member USER of TEAM a team 'admin' or a plain 'member' (org or team admins)."""
    view = state.backend().set_team_role(team_name, user_name, role)
    click.echo(f"{user_name!r} is now a team {role} of {view.name!r}.")
    click.echo(f"Members: {_members_line(view)}")


@team.command("rm")
@click.argument("team_name", metavar="TEAM")
@click.argument("user_name", metavar="USER")
@pass_state
def team_rm(state: State, team_name: str, user_name: str) -> None:
    """Remove USER from TEAM (org admins and team admins; anyone may remove themselves).

    USER loses the registry roles TEAM holds. A team admin cannot remove the
    team's last admin while other members remain.
    """
    view = state.backend().remove_team_member(team_name, user_name)
    click.echo(f"Removed {user_name!r} from team {view.name!r} (members: {_members_line(view)}).")


# -- registries ------------------------------------------------------------------------------


@click.group()
def registry() -> None:
    """Registries: their members, roles and protected aliases."""


@registry.command("create")
@click.argument("name")
@click.option(
    "--visibility",
    type=VISIBILITIES,
    default="organization",
    show_default=True,
    help="'organization': every org member may view; 'restricted': members only.",
)
@click.option(
    "--types",
    metavar="T1,T2",
    help="Comma-separated artifact types the registry accepts (default: all).",
)
@click.option("--description", default="", help="What the registry is for.")
@pass_state
def registry_create(
    state: State, name: str, visibility: str, types: str | None, description: str
) -> None:
    """Create a registry; you become its admin."""
    artifact_types = [t.strip() for t in types.split(",") if t.strip()] if types else None
    view = state.backend().create_registry(
        name, visibility=visibility, description=description, artifact_types=artifact_types
    )
    accepts = ", ".join(view.artifact_types) if view.artifact_types else "all types"
    click.echo(
        f"Created registry {view.full_name} (visibility: {view.visibility}; accepts {accepts})."
    )


@registry.command("list")
@JSON
@pass_state
def registry_list(state: State, as_json: bool) -> None:
    """List the registries you can see, with your role in each."""
    regs = state.backend().list_registries()
    if as_json:
        emit_json(regs)
        return
    table(
        ["name", "visibility", "types", "your role", "collections", "protected aliases"],
        [
            (
                r.name,
                r.visibility,
                r.artifact_types or "all",
                r.role,
                r.collection_count,
                r.protected_aliases,
            )
            for r in regs
        ],
    )


@registry.group("member")
def registry_member() -> None:
    """Give and take registry roles."""


def _set_role(
    state: State, reg: str, principal: str, team: bool, role: str | None
) -> list[MemberView]:
    """Set a role for a user or, if no user has that name (or with --team), a team."""
    backend = state.backend()
    members: list[MemberView]
    if not team:
        try:
            members = backend.set_registry_role(reg, user=principal, role=role)
            return members
        except UserNotFound:
            pass
    try:
        members = backend.set_registry_role(reg, team=principal, role=role)
        return members
    except TeamNotFound:
        if team:
            raise
        raise NotFound(f"no user or team named {principal!r}", name=principal) from None


def _print_members(members: list[MemberView]) -> None:
    table(
        ["kind", "name", "role"], [(m.kind, m.name, m.role) for m in members], empty="(no members)"
    )


@registry_member.command("add")
@click.argument("reg", metavar="REGISTRY")
@click.argument("principal", metavar="USER|TEAM")
@click.option("--role", type=REGISTRY_ROLES, required=True, help="The role to give.")
@click.option("--team", is_flag=True, help="USER|TEAM names a team (default: try a user first).")
@pass_state
def registry_member_add(state: State, reg: str, principal: str, role: str, team: bool) -> None:
    """Give USER or TEAM a role in REGISTRY (registry admins only)."""
    members = _set_role(state, registry_name(reg), principal, team, role)
    click.echo(f"Gave {principal!r} the role {role!r} in registry {registry_name(reg)!r}.")
    _print_members(members)


@registry_member.command("rm")
@click.argument("reg", metavar="REGISTRY")
@click.argument("principal", metavar="USER|TEAM")
@click.option("--team", is_flag=True, help="USER|TEAM names a team (default: try a user first).")
@pass_state
def registry_member_rm(state: State, reg: str, principal: str, team: bool) -> None:
    """Take away the role USER or TEAM was given in REGISTRY."""
    members = _set_role(state, registry_name(reg), principal, team, None)
    click.echo(f"Removed {principal!r} from registry {registry_name(reg)!r}.")
    _print_members(members)


@registry.command("members")
@click.argument("reg", metavar="REGISTRY")
@JSON
@pass_state
def registry_members(state: State, reg: str, as_json: bool) -> None:
    """List the users and teams given a role in REGISTRY."""
    members = state.backend().registry_members(registry_name(reg))
    if as_json:
        emit_json(members)
    else:
        _print_members(members)


@registry.command("protect")
@click.argument("reg", metavar="REGISTRY")
@click.argument("alias")
@pass_state
def registry_protect(state: State, reg: str, alias: str) -> None:
    """Declare ALIAS protected in REGISTRY: only its admins may then set or move it."""
    names = state.backend().protect_alias(registry_name(reg), alias)
    click.echo(f"Protected aliases in {registry_name(reg)!r}: {', '.join(names) or '-'}")


@registry.command("unprotect")
@click.argument("reg", metavar="REGISTRY")
@click.argument("alias")
@pass_state
def registry_unprotect(state: State, reg: str, alias: str) -> None:
    """Remove ALIAS from REGISTRY's protected aliases."""
    names = state.backend().unprotect_alias(registry_name(reg), alias)
    click.echo(f"Protected aliases in {registry_name(reg)!r}: {', '.join(names) or '-'}")


# -- garbage collection ---------------------------------------------------------------


def _grace(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(value, "--grace"))
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message) from None


def _size(n: int) -> str:
    """Bytes for people: ``512 B``, ``3.2 MiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, i = float(n), 0
    while value >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{n} B" if i == 0 else f"{value:.1f} {units[i]}"


@click.command("gc")
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    callback=_grace,
    metavar="DURATION",
    help="Free only contents unreferenced and unused this long (90s, 30m, 24h, 7d).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be freed; delete nothing.")
@JSON
@pass_state
def gc(state: State, grace: timedelta, dry_run: bool, as_json: bool) -> None:
    """Free stored contents no version references (org admins only).

    A content is freed when no version, run or unfinished upload of the wandb
    client holds it and nobody wrote, uploaded or was told "already stored"
    about it within the grace period. Safe while uploads and commits run, on
    this server or another: a commit whose content was freed fails with
    content_not_uploaded and succeeds once the client sends it again.
    """
    report = state.backend().collect_garbage(grace=grace, dry_run=dry_run)
    if as_json:
        emit_json(report)
        return
    verb = "would free" if dry_run else "freed"
    for digest in report.freed:
        click.echo(f"{verb} {digest}")
    click.echo(
        f"{verb} {report.freed_blobs} blobs ({_size(report.freed_bytes)}) of "
        f"{report.scanned}; kept {report.kept_referenced} referenced, "
        f"{report.kept_young} younger than the grace period"
        + (f"; {report.failed} could not be deleted" if report.failed else "")
    )


COMMANDS = [init, user, team, registry, gc]
