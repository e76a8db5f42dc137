"""Who the caller is, what the server offers, and which organization an
entity belongs to: the `wandb` client's login, ``serverInfo`` and registry gate.

A W&B *entity* is a user's own name or a team's; Regalia's one organization is
every entity's organization, and its ``orgEntity`` (the entity registries live
under, ``org/wandb-registry-X/...``) is named after it.
"""

from __future__ import annotations

import json
from typing import Any

from regalia.server.wandb.ids import encode_id
from regalia.server.wandb.resolvers import WandbContext, context, query, with_fields
from regalia.service.views import Actor

NEWEST_TESTED_CLIENT = "0.31.0"

# Server features advertised to the client (``serverInfo.features``): the names
# of the client's ServerFeature enum that Regalia implements.
FEATURES: tuple[str, ...] = (
    "ARTIFACT_MEMBERSHIP_IN_LINK_ARTIFACT_RESPONSE",  # linkArtifact answers the membership (log.py)
    "ARTIFACT_REGISTRY_SEARCH",  # registries()/collections()/versions() (registries.py)
    "INCLUDE_ARTIFACT_TYPES_IN_REGISTRY_CREATION",  # create_registry(artifact_types=...)
    # The file stream takes gzip bodies (runs.py; 0.31 sends them when the run's
    # x_file_stream_no_gzip setting is off, and it is on by default).
    "FILESTREAM_GZIP",
)


def viewer_of(actor: Actor) -> dict[str, Any]:
    """The caller as W&B's ``User``: its entity is the user's own name."""
    return with_fields(
        "User",
        {
            "id": encode_id("User", actor.user_id),
            "name": actor.name,
            "username": actor.name,
            "email": None,
            "entity": actor.name,
            "admin": actor.is_org_admin,
            "flags": json.dumps({}),
            "deletedAt": None,
            "teams": {"edges": [{"node": entity_of_name(n)} for n in actor.team_names]},
            "apiKeys": {"edges": []},
            "organizations": lambda info, **_: [organization_of(context(info))],
        },
    )


def organization_of(ctx: WandbContext) -> dict[str, Any]:
    """Regalia's organization as W&B's ``Organization``."""
    name = ctx.actor.org_name
    return with_fields(
        "Organization",
        {
            "id": encode_id("Organization", ctx.actor.org_id),
            "name": name,
            "orgEntity": {**entity_of_name(name), "isTeam": True, "entityType": "organization"},
        },
    )


def entity_of_name(name: str) -> dict[str, Any]:
    return with_fields("Entity", {"id": encode_id("Entity", name), "name": name})


@query("viewer")
def viewer(info: Any, **_: Any) -> dict[str, Any]:
    return viewer_of(context(info).actor)


@query("serverInfo")
def server_info(info: Any, **_: Any) -> dict[str, Any]:
    return {
        "features": [{"name": n, "isEnabled": True} for n in FEATURES],
        # Releases before 0.26 gate some queries on this (``version_supported``):
        # the newest client release Regalia is tested with.
        "cliVersionInfo": {"max_cli_version": NEWEST_TESTED_CLIENT},
    }


@query("entity")
def entity(info: Any, name: str | None = None, **_: Any) -> dict[str, Any] | None:
    """An entity the caller may name: its own, a team's, or the organization's.

    Its ``organization`` is Regalia's (for a team and the org entity), and a
    user's ``user.organizations`` lists it: the client resolves a registry path
    without an org from either (``FetchOrgInfoFromEntity``)."""
    ctx = context(info)
    actor = ctx.actor
    name = name or actor.name
    out = entity_of_name(name)
    key = name.lower()
    org = organization_of(ctx)
    if key == actor.name.lower():
        return {**out, "organization": None, "user": viewer_of(actor), "isTeam": False}
    # A team (or the organization's own entity): rights are checked where it is used.
    return {**out, "organization": org, "user": None, "isTeam": True}
