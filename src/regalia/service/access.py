"""Who may do what: effective registry roles and project access (SPEC §4)."""

from __future__ import annotations

from collections.abc import Sequence

from regalia.core.roles import (
    OrgRole,
    Permission,
    RegistryRole,
    Visibility,
    highest,
    implied_by_org,
    require,
)
from regalia.errors import PermissionDenied, RegistryNotFound
from regalia.service.views import Actor
from regalia.store.models import Project, Registry
from regalia.store.repo import Repo


def effective_roles(
    repo: Repo, actor: Actor, registries: Sequence[Registry]
) -> dict[int, RegistryRole | None]:
    """The caller's effective role in each registry: the highest of the role given
    to them, to any of their teams, and the one their org role implies."""
    grants = repo.registry_grants([r.id for r in registries], actor.user_id, actor.team_ids)
    org_role = OrgRole(actor.org_role)
    out: dict[int, RegistryRole | None] = {}
    for reg in registries:
        given = [RegistryRole(g) for g in grants.get(reg.id, [])]
        out[reg.id] = highest(implied_by_org(org_role, Visibility(reg.visibility)), *given)
    return out


def registry_role(repo: Repo, actor: Actor, registry: Registry) -> RegistryRole | None:
    return effective_roles(repo, actor, [registry])[registry.id]


def visible_registry(
    repo: Repo, actor: Actor, name: str, *, for_update: bool = False
) -> tuple[Registry, RegistryRole]:
    """The registry and the caller's role; 404 if missing or not visible to the caller.
    With ``for_update`` the registry is the session's object, whose changes are saved."""
    reg = repo.registry_by_name(actor.org_id, name, for_update=for_update)
    role = registry_role(repo, actor, reg) if reg is not None else None
    if reg is None or role is None:
        raise RegistryNotFound(f"registry {name!r} not found", registry=name)
    return reg, role


def check(role: RegistryRole, permission: Permission, registry: Registry) -> None:
    require(role, permission, registry.name)


def may_see(repo: Repo, actor: Actor, registry: Registry | None, project: Project | None) -> bool:
    """Whether the caller may see a collection of ``registry`` (a link) or of
    ``project`` (a source artifact)."""
    if registry is not None:
        return registry_role(repo, actor, registry) is not None
    return project is not None and can_use_entity(actor, project.entity)


def can_use_entity(actor: Actor, entity: str) -> bool:
    """Source artifacts: a user's own entity, their teams', or anywhere for org admins."""
    key = entity.lower()
    return (
        actor.is_org_admin
        or key == actor.name.lower()
        or key in {t.lower() for t in actor.team_names}
    )


def require_entity(actor: Actor, entity: str, project: str, doing: str) -> None:
    if not can_use_entity(actor, entity):
        raise PermissionDenied(
            f"you may not {doing} in project {entity}/{project}: only the entity's own user, "
            "members of its team and org admins may",
            required_role="entity member",
            entity=entity,
        )


def require_org_admin(actor: Actor, doing: str) -> None:
    if not actor.is_org_admin:
        raise PermissionDenied(
            f"you need the organization role 'admin' to {doing} (your role: {actor.org_role})",
            required_role="admin",
            role=actor.org_role,
        )
