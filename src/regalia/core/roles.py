"""Roles and permissions (SPEC §4) as a typed vocabulary, no I/O.

A registry role is one of ``restricted_viewer < viewer < member < admin``.
Each :class:`Permission` names the lowest registry role that holds it; the
service layer checks every action through :func:`require`.
"""

from __future__ import annotations

from enum import StrEnum

from regalia.errors import InvalidRequest, PermissionDenied


class RegistryRole(StrEnum):
    RESTRICTED_VIEWER = "restricted_viewer"
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, value: str) -> RegistryRole:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise InvalidRequest(
                f"unknown registry role {value!r}; use one of {allowed}", rule="role"
            ) from None


_RANK = {
    RegistryRole.RESTRICTED_VIEWER: 0,
    RegistryRole.VIEWER: 1,
    RegistryRole.MEMBER: 2,
    RegistryRole.ADMIN: 3,
}


class OrgRole(StrEnum):
    VIEWER = "viewer"
    MEMBER = "member"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: str) -> OrgRole:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(r.value for r in cls)
            raise InvalidRequest(
                f"unknown organization role {value!r}; use one of {allowed}", rule="role"
            ) from None


class TeamRole(StrEnum):
    """A member's role inside a team: team admins (and org admins) manage its members."""

    MEMBER = "member"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value: str) -> TeamRole:
        try:
            return cls(value)
        except ValueError:
            raise InvalidRequest(
                f"unknown team role {value!r}; use 'member' or 'admin'", rule="role"
            ) from None


class Visibility(StrEnum):
    ORGANIZATION = "organization"
    RESTRICTED = "restricted"

    @classmethod
    def parse(cls, value: str) -> Visibility:
        try:
            return cls(value)
        except ValueError:
            raise InvalidRequest(
                f"unknown visibility {value!r}; use 'organization' or 'restricted'",
                rule="visibility",
            ) from None


class Permission(StrEnum):
    """``<resource>:<action>``; the value of ``MIN_ROLE`` is the lowest role holding it."""

    REGISTRY_VIEW = "registry:view"
    FILES_DOWNLOAD = "files:download"
    VERSION_LINK = "version:link"
    COLLECTION_EDIT = "collection:edit"
    ALIAS_EDIT = "alias:edit"
    VERSION_UNLINK = "version:unlink"
    AUTOMATION_EDIT = "automation:edit"
    PROTECTED_ALIAS_EDIT = "protected_alias:edit"
    REGISTRY_ADMIN = "registry:admin"


MIN_ROLE: dict[Permission, RegistryRole] = {
    Permission.REGISTRY_VIEW: RegistryRole.RESTRICTED_VIEWER,
    Permission.FILES_DOWNLOAD: RegistryRole.VIEWER,
    Permission.VERSION_LINK: RegistryRole.MEMBER,
    Permission.COLLECTION_EDIT: RegistryRole.MEMBER,
    Permission.ALIAS_EDIT: RegistryRole.MEMBER,
    Permission.VERSION_UNLINK: RegistryRole.MEMBER,
    Permission.AUTOMATION_EDIT: RegistryRole.MEMBER,
    Permission.PROTECTED_ALIAS_EDIT: RegistryRole.ADMIN,
    Permission.REGISTRY_ADMIN: RegistryRole.ADMIN,
}

_DOING = {
    Permission.REGISTRY_VIEW: "view this registry",
    Permission.FILES_DOWNLOAD: "download files",
    Permission.VERSION_LINK: "link versions",
    Permission.COLLECTION_EDIT: "edit collections, descriptions and tags",
    Permission.ALIAS_EDIT: "change aliases",
    Permission.VERSION_UNLINK: "unlink versions",
    Permission.AUTOMATION_EDIT: "create or delete automations",
    Permission.PROTECTED_ALIAS_EDIT: "change protected aliases or what holds them",
    Permission.REGISTRY_ADMIN: "manage members, roles, visibility and types",
}


def allows(role: RegistryRole | None, permission: Permission) -> bool:
    """True if ``role`` (None: no access at all) holds ``permission``."""
    return role is not None and role.rank >= MIN_ROLE[permission].rank


def require(role: RegistryRole | None, permission: Permission, registry: str) -> None:
    """Raise PermissionDenied (naming the role needed) unless ``role`` holds ``permission``."""
    if allows(role, permission):
        return
    needed = MIN_ROLE[permission]
    have = role.value if role else "none"
    raise PermissionDenied(
        f"you need the registry role '{needed.value}' in registry {registry!r} to "
        f"{_DOING[permission]} (your role: {have})",
        required_role=needed.value,
        role=have,
        permission=permission.value,
    )


def highest(*roles: RegistryRole | None) -> RegistryRole | None:
    """The highest of the given roles, ignoring None."""
    present = [r for r in roles if r is not None]
    return max(present, key=lambda r: r.rank) if present else None


def implied_by_org(org_role: OrgRole, visibility: Visibility) -> RegistryRole | None:
    """The registry role an org role implies: admin everywhere for org admins,
    viewer in organization-visible registries for everyone else."""
    if org_role is OrgRole.ADMIN:
        return RegistryRole.ADMIN
    if visibility is Visibility.ORGANIZATION:
        return RegistryRole.VIEWER
    return None


SERVICE_ACCOUNT_ROLES = frozenset({RegistryRole.MEMBER, RegistryRole.ADMIN})
SERVICE_ACCOUNT_ORG_ROLES = frozenset({OrgRole.MEMBER, OrgRole.ADMIN})
