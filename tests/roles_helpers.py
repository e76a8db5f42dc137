"""A realistic setting for the SPEC §4 role tests.

:func:`build_world` makes a ``restricted`` custom registry ``Prod`` whose collection
``zoo`` holds two linked versions of the owner's artifact:

- ``Prod/zoo:v0`` (``world.held``) holds the protected alias ``production``;
- ``Prod/zoo:v1`` (``world.free``) holds the unprotected ``staging`` and ``latest``.

``world.actor(role)`` is a fresh org member given ``role`` in ``Prod``, acting
through its own API key; ``world.snapshot()`` is everything a refused write must
leave unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from regalia.errors import CollectionNotFound, VersionNotFound
from regalia.service import Actor, Service
from regalia.service.views import VersionView

REGISTRY = "Prod"
COLLECTION = "zoo"
TARGET = f"wandb-registry-{REGISTRY}/{COLLECTION}"
PROTECTED = "production"
ROLES = ("restricted_viewer", "viewer", "member", "admin")


def new_actor(
    service: Service,
    owner: Actor,
    name: str,
    *,
    org_role: str = "member",
    service_account: bool = False,
) -> Actor:
    """Create a user (or service account) and act as it through its own API key."""
    _, key = service.create_user(owner, name, org_role=org_role, service_account=service_account)
    assert key is not None
    return service.authenticate(key)


@dataclass
class RoleWorld:
    service: Service
    owner: Actor
    make_version: Callable[..., VersionView]
    held: VersionView  # Prod/zoo:v0, holds the protected alias
    free: VersionView  # Prod/zoo:v1, holds 'staging' and 'latest'

    def actor(self, role: str, *, name: str | None = None, org_role: str = "member") -> Actor:
        """A new user with org role ``org_role`` given registry role ``role`` in Prod."""
        name = name or f"{role.replace('_', '-')}-user"
        actor = new_actor(self.service, self.owner, name, org_role=org_role)
        self.service.set_registry_role(self.owner, REGISTRY, user=name, role=role)
        return actor

    def aliases(self, view: VersionView) -> list[str]:
        """The aliases the version holds now, as the owner sees them."""
        return sorted(self.service.get_version(self.owner, view.membership_id).aliases)

    def snapshot(self, *collections: str) -> dict[str, Any]:
        """What a refused write must not change: registry settings, members, the
        collections (``zoo`` and any named), every link, the history."""
        s, o = self.service, self.owner
        reg = s.get_registry(o, REGISTRY)
        colls: dict[str, Any] = {}
        for name in (COLLECTION, *collections):
            try:
                c = s.get_collection(o, REGISTRY, name)
            except CollectionNotFound:
                colls[name] = None
                continue
            colls[name] = (c.type, c.description, sorted(c.tags), c.version_count)
        links: dict[int, Any] = {}
        for index in range(4):
            try:
                v = s.resolve(o, f"{TARGET}:v{index}")
            except VersionNotFound:
                links[index] = None
                continue
            links[index] = (
                v.source_qualified_name,
                sorted(v.aliases),
                sorted(v.tags),
                v.description,
                v.metadata,
            )
        return {
            "registry": (
                reg.visibility,
                reg.artifact_types,
                sorted(reg.protected_aliases),
                reg.description,
                reg.collection_count,
            ),
            "members": sorted((m.kind, m.name, m.role) for m in s.registry_members(o, REGISTRY)),
            "collections": colls,
            "links": links,
            "history": [e.id for e in s.history(o, REGISTRY, limit=1000).items],
        }


def build_world(
    service: Service, owner: Actor, make_version: Callable[..., VersionView]
) -> RoleWorld:
    service.create_registry(owner, REGISTRY, visibility="restricted")
    service.protect_alias(owner, REGISTRY, PROTECTED)
    first = make_version(
        owner,
        name="zoo",
        metadata={"accuracy": 0.9},
        description="first model",
        tags=["baseline"],
    )
    second = make_version(owner, name="zoo")
    held = service.link(owner, first.membership_id, TARGET, [PROTECTED])
    free = service.link(owner, second.membership_id, TARGET, ["staging"])
    service.update_collection(
        owner, REGISTRY, COLLECTION, description="the card", add_tags=["vision"]
    )
    return RoleWorld(service, owner, make_version, held, free)
