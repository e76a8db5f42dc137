"""Use cases on identities and registries: users, teams, roles, registries,
protected aliases and collections."""

from __future__ import annotations

from collections.abc import Sequence

from regalia.core.apikeys import PREFIX_LENGTH
from regalia.core.jsonvalues import validate_text
from regalia.core.names import (
    name_key,
    removable,
    removable_alias,
    validate_alias,
    validate_entity_name,
    validate_registry_name,
    validate_tag,
)
from regalia.core.roles import (
    SERVICE_ACCOUNT_ORG_ROLES,
    SERVICE_ACCOUNT_ROLES,
    OrgRole,
    Permission,
    RegistryRole,
    Visibility,
)
from regalia.errors import (
    AlreadyExists,
    CollectionNotFound,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from regalia.service.access import (
    check,
    effective_roles,
    registry_role,
    require_org_admin,
    visible_registry,
)
from regalia.service.base import as_utc
from regalia.service.teams import TeamsMixin
from regalia.service.views import (
    Actor,
    CollectionView,
    KeyView,
    MemberView,
    RegistryView,
    UserView,
)
from regalia.store.models import ApiKey, Collection, Registry, User
from regalia.store.repo import Repo


class AdminMixin(TeamsMixin):
    # -- users, service accounts, keys ----------------------------------------------
    def create_user(
        self,
        actor: Actor,
        name: str,
        *,
        org_role: str = "member",
        service_account: bool = False,
        exist_ok: bool = False,
    ) -> tuple[UserView, str | None]:
        """Create a user or service account and return it with a new API key
        (None when ``exist_ok`` found an existing user). Org admins only."""
        validate_entity_name(name, "user name")
        role = OrgRole.parse(org_role)
        if service_account and role not in SERVICE_ACCOUNT_ORG_ROLES:
            raise InvalidRequest(
                f"service accounts can be 'member' or 'admin', not {role.value!r}", rule="role"
            )
        require_org_admin(actor, "create users")

        def fn(repo: Repo) -> tuple[UserView, str | None]:
            found = repo.user_by_name(actor.org_id, name)
            if found is not None or repo.team_by_name(actor.org_id, name) is not None:
                if exist_ok and found is not None:
                    return self._user_view(repo, found), None
                raise AlreadyExists(f"a user or team named {name!r} already exists", name=name)
            user = repo.add(
                User(
                    org_id=actor.org_id,
                    name=name,
                    name_key=name.lower(),
                    kind="service" if service_account else "user",
                    org_role=role.value,
                    created_at=self.now(),
                )
            )
            key = self._issue_key(repo, user.id)
            self._record(repo, actor, "role_change", None, user=name, org_role=role.value)
            return self._user_view(repo, user), key

        return self.db.write(fn)

    def first_api_key(self, actor: Actor) -> str | None:
        """A key for ``actor`` if they have none yet (a new server's admin), else None."""

        def fn(repo: Repo) -> str | None:
            if repo.has_active_key(actor.user_id):
                return None
            return self._issue_key(repo, actor.user_id)

        return self.db.write(fn)

    def create_api_key(self, actor: Actor, user_name: str | None = None) -> str:
        """A new API key for yourself, or (org admins) for another user."""

        def fn(repo: Repo) -> str:
            user = self._user(repo, actor, user_name or actor.name)
            if user.id != actor.user_id:
                require_org_admin(actor, "create API keys for other users")
            return self._issue_key(repo, user.id)

        return self.db.write(fn)

    def revoke_api_keys(self, actor: Actor, user_name: str) -> int:
        def fn(repo: Repo) -> int:
            user = self._user(repo, actor, user_name)
            if user.id != actor.user_id:
                require_org_admin(actor, "revoke other users' API keys")
            return repo.revoke_keys(user.id, self.now())

        try:
            return self.db.write(fn)
        finally:
            self.keys_changed()

    def list_api_keys(self, actor: Actor, user_name: str | None = None) -> list[KeyView]:
        """Your API keys, or (org admins) another user's, oldest first; revoked
        keys too. Only the first characters of each key are shown."""

        def fn(repo: Repo) -> list[KeyView]:
            user = self._user(repo, actor, user_name or actor.name)
            if user.id != actor.user_id:
                require_org_admin(actor, "list other users' API keys")
            return [_key_view(k, name) for k, name in repo.api_keys(actor.org_id, user.id)]

        return self.db.read(fn)

    def revoke_api_key(self, actor: Actor, prefix: str) -> KeyView:
        """Revoke the one active key whose stored prefix and ``prefix`` start
        alike (either may be the longer: the whole key names its own prefix).

        The search covers the caller's own keys, and an org admin's every key of
        the organization (so no one learns of keys they may not revoke).

        Raises:
            InvalidRequest: ``prefix`` is empty, or more than one active key matches.
            NotFound: no key matches. Conflict: the only matching key is revoked already.
        """
        text = prefix.strip()[:PREFIX_LENGTH]
        if not text:
            raise InvalidRequest(
                "give the first characters of the API key to revoke (see 'regalia key list')"
            )

        def fn(repo: Repo) -> KeyView:
            scope = None if actor.is_org_admin else actor.user_id
            found = [
                (key, name)
                for key, name in repo.api_keys(actor.org_id, scope)
                if key.prefix.startswith(text) or text.startswith(key.prefix)
            ]
            active = [(key, name) for key, name in found if key.revoked_at is None]
            if not found:
                whose = "API key in the organization" if scope is None else "API key of yours"
                hint = "" if scope is None else " (org admins may revoke other users' keys)"
                raise NotFound(
                    f"no {whose} starts with {text!r}{hint}; see 'regalia key list'",
                    prefix=text,
                )
            if not active:
                key, name = found[-1]
                raise Conflict(
                    f"the API key {key.prefix}… of {name!r} was revoked already "
                    f"({as_utc(key.revoked_at or key.created_at):%Y-%m-%d %H:%M:%S} UTC)",
                    prefix=key.prefix,
                )
            if len(active) > 1:
                raise InvalidRequest(
                    f"{len(active)} active API keys start with {text!r}: give more of "
                    "the key (see 'regalia key list')",
                    prefix=text,
                    matches=len(active),
                )
            key, name = active[0]
            key.revoked_at = self.now()
            return _key_view(key, name)

        try:
            return self.db.write(fn)
        finally:
            self.keys_changed()

    def set_org_role(self, actor: Actor, user_name: str, org_role: str) -> UserView:
        role = OrgRole.parse(org_role)
        require_org_admin(actor, "change organization roles")

        def fn(repo: Repo) -> UserView:
            user = self._user(repo, actor, user_name)
            if user.kind == "service" and role not in SERVICE_ACCOUNT_ORG_ROLES:
                raise InvalidRequest("service accounts can be 'member' or 'admin'", rule="role")
            user.org_role = role.value
            self._record(repo, actor, "role_change", None, user=user.name, org_role=role.value)
            return self._user_view(repo, user)

        return self.db.write(fn)

    def list_users(self, actor: Actor) -> list[UserView]:
        return self.db.read(lambda r: [self._user_view(r, u) for u in r.users(actor.org_id)])

    def _user_view(self, repo: Repo, user: User) -> UserView:
        return UserView(
            id=user.id,
            name=user.name,
            kind=user.kind,
            org_role=user.org_role,
            teams=[t.name for t in repo.teams_of(user.id)],
        )

    # -- registries -----------------------------------------------------------------------
    def create_registry(
        self,
        actor: Actor,
        name: str,
        *,
        visibility: str = "organization",
        description: str = "",
        artifact_types: Sequence[str] | None = None,
        exist_ok: bool = False,
    ) -> RegistryView:
        """Create a custom registry; org role member or admin; the creator becomes its admin."""
        name = validate_registry_name(name)
        validate_text(description, "the description")
        vis = Visibility.parse(visibility)
        types = self._types(artifact_types)
        if actor.org_role not in (OrgRole.ADMIN, OrgRole.MEMBER):
            raise PermissionDenied(
                "you need the organization role 'member' or 'admin' to create registries "
                f"(your role: {actor.org_role})",
                required_role="member",
            )

        def fn(repo: Repo) -> RegistryView:
            found = repo.registry_by_name(actor.org_id, name, for_update=True)
            if found is not None:
                if registry_role(repo, actor, found) is None:
                    # Names are unique in the org, so that the name is taken cannot be
                    # hidden from someone allowed to create registries; nothing else
                    # about the registry is told (not even how its name is spelt).
                    raise AlreadyExists(
                        f"the registry name {name!r} is not available (names are unique "
                        "in the organization, ignoring case); choose another",
                        name=name,
                    )
                if exist_ok:
                    return self._registry_views(repo, actor, [found])[0]
                raise AlreadyExists(
                    f"a registry named {found.name!r} already exists (names ignore case)",
                    registry=found.name,
                )
            now = self.now()
            reg = repo.add(
                Registry(
                    org_id=actor.org_id,
                    name=name,
                    name_key=name_key(name),
                    description=description,
                    visibility=vis.value,
                    artifact_types=types,
                    is_core=False,
                    created_by=actor.user_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            repo.set_registry_member(
                reg.id, user_id=actor.user_id, team_id=None, role=RegistryRole.ADMIN.value
            )
            self._record(
                repo, actor, "registry_create", None, registry_id=reg.id, registry=reg.name
            )
            return self._registry_views(repo, actor, [reg])[0]

        return self.db.write(fn)

    @staticmethod
    def _types(artifact_types: Sequence[str] | None) -> list[str] | None:
        if artifact_types is None:
            return None
        from regalia.core.names import validate_artifact_name

        types = [validate_artifact_name(t.strip(), "artifact type") for t in artifact_types]
        return list(dict.fromkeys(types)) or None

    def get_registry(self, actor: Actor, name: str) -> RegistryView:
        def fn(repo: Repo) -> RegistryView:
            reg, _ = visible_registry(repo, actor, name)
            return self._registry_views(repo, actor, [reg])[0]

        return self.db.read(fn)

    def list_registries(self, actor: Actor) -> list[RegistryView]:
        """Every registry the caller may see."""

        def fn(repo: Repo) -> list[RegistryView]:
            regs = repo.registries(actor.org_id)
            roles = effective_roles(repo, actor, regs)
            return self._registry_views(repo, actor, [r for r in regs if roles[r.id] is not None])

        return self.db.read(fn)

    def update_registry(
        self,
        actor: Actor,
        name: str,
        *,
        description: str | None = None,
        visibility: str | None = None,
        artifact_types: Sequence[str] | None = None,
        clear_artifact_types: bool = False,
    ) -> RegistryView:
        vis = Visibility.parse(visibility) if visibility is not None else None
        types = self._types(artifact_types)
        validate_text(description, "the description")

        def fn(repo: Repo) -> RegistryView:
            reg, role = visible_registry(repo, actor, name, for_update=True)
            if description is not None:
                check(role, Permission.COLLECTION_EDIT, reg)
                reg.description = description
            if vis is not None or types is not None or clear_artifact_types:
                check(role, Permission.REGISTRY_ADMIN, reg)
                if vis is not None:
                    reg.visibility = vis.value
                if types is not None or clear_artifact_types:
                    reg.artifact_types = types
            reg.updated_at = self.now()
            self._record(
                repo,
                actor,
                "registry_update",
                None,
                registry_id=reg.id,
                visibility=reg.visibility,
                artifact_types=reg.artifact_types,
            )
            return self._registry_views(repo, actor, [reg])[0]

        return self.db.write(fn)

    def delete_registry(self, actor: Actor, name: str) -> None:
        def fn(repo: Repo) -> None:
            reg, role = visible_registry(repo, actor, name, for_update=True)
            check(role, Permission.REGISTRY_ADMIN, reg)
            if reg.is_core:
                raise InvalidRequest(f"the core registry {reg.name!r} cannot be deleted")
            for coll in repo.registry_collections(reg.id):
                repo.delete_collection(coll.id)
            self._record(
                repo, actor, "registry_delete", None, registry_id=reg.id, registry=reg.name
            )
            repo.s.delete(reg)

        self.db.write(fn)

    def set_registry_role(
        self,
        actor: Actor,
        registry: str,
        *,
        user: str | None = None,
        team: str | None = None,
        role: str | None,
    ) -> list[MemberView]:
        """Give (or with role=None remove) a registry role to a user or a team. Admins only."""
        if (user is None) == (team is None):
            raise InvalidRequest("name exactly one of a user or a team")
        new_role = RegistryRole.parse(role) if role is not None else None

        def fn(repo: Repo) -> list[MemberView]:
            reg, my_role = visible_registry(repo, actor, registry)
            check(my_role, Permission.REGISTRY_ADMIN, reg)
            user_id = team_id = None
            if user is not None:
                target = self._user(repo, actor, user)
                if (
                    target.kind == "service"
                    and new_role is not None
                    and new_role not in SERVICE_ACCOUNT_ROLES
                ):
                    raise InvalidRequest(
                        "service accounts can be 'member' or 'admin' in a registry",
                        rule="role",
                    )
                user_id = target.id
            else:
                team_id = self._team(repo, actor, team or "").id
            previous = repo.set_registry_member(
                reg.id,
                user_id=user_id,
                team_id=team_id,
                role=new_role.value if new_role else None,
            )
            self._record(
                repo,
                actor,
                "role_change",
                None,
                registry_id=reg.id,
                user=user,
                team=team,
                role=new_role.value if new_role else None,
                previous=previous,
            )
            return [MemberView(k, n, r) for k, n, r in repo.registry_members(reg.id)]

        return self.db.write(fn)

    def registry_members(self, actor: Actor, registry: str) -> list[MemberView]:
        def fn(repo: Repo) -> list[MemberView]:
            reg, _ = visible_registry(repo, actor, registry)
            return [MemberView(k, n, r) for k, n, r in repo.registry_members(reg.id)]

        return self.db.read(fn)

    # -- protected aliases (R7) --------------------------------------------------------------
    def protect_alias(self, actor: Actor, registry: str, alias: str) -> list[str]:
        alias = validate_alias(alias)

        def fn(repo: Repo) -> list[str]:
            reg, role = visible_registry(repo, actor, registry)
            check(role, Permission.PROTECTED_ALIAS_EDIT, reg)
            if repo.add_protected_alias(reg.id, alias, self.now()):
                self._record(
                    repo, actor, "protected_alias_add", None, registry_id=reg.id, alias=alias
                )
            return repo.protected_aliases(reg.id)

        return self.db.write(fn)

    def unprotect_alias(self, actor: Actor, registry: str, alias: str) -> list[str]:
        alias = removable_alias(alias)

        def fn(repo: Repo) -> list[str]:
            reg, role = visible_registry(repo, actor, registry)
            check(role, Permission.PROTECTED_ALIAS_EDIT, reg)
            if repo.remove_protected_alias(reg.id, alias):
                self._record(
                    repo, actor, "protected_alias_remove", None, registry_id=reg.id, alias=alias
                )
            return repo.protected_aliases(reg.id)

        return self.db.write(fn)

    # -- collections ---------------------------------------------------------------------------
    def _collection(
        self, repo: Repo, actor: Actor, registry: str, name: str, *, lock: bool = False
    ) -> tuple[Registry, RegistryRole, Collection]:
        reg, role = visible_registry(repo, actor, registry)
        coll = repo.collection_in_registry(reg.id, name, lock=lock)
        if coll is None:
            raise CollectionNotFound(
                f"collection {name!r} not found in registry {reg.name!r}",
                registry=reg.name,
                collection=name,
            )
        return reg, role, coll

    def get_collection(self, actor: Actor, registry: str, name: str) -> CollectionView:
        def fn(repo: Repo) -> CollectionView:
            _, _, coll = self._collection(repo, actor, registry, name)
            return self._collection_views(repo, [coll])[0]

        return self.db.read(fn)

    def update_collection(
        self,
        actor: Actor,
        registry: str,
        name: str,
        *,
        description: str | None = None,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
    ) -> CollectionView:
        add = [validate_tag(t) for t in add_tags]
        remove = [removable(validate_tag, t) for t in remove_tags]
        validate_text(description, "the description")

        def fn(repo: Repo) -> CollectionView:
            reg, role, coll = self._collection(repo, actor, registry, name, lock=True)
            check(role, Permission.COLLECTION_EDIT, reg)
            if description is not None:
                coll.description = description
            repo.set_collection_tags(coll.id, add, remove)
            for tag in add:
                self._record(repo, actor, "collection_tag_add", coll, tag=tag)
            for tag in remove:
                self._record(repo, actor, "collection_tag_remove", coll, tag=tag)
            coll.updated_at = self.now()
            return self._collection_views(repo, [coll])[0]

        return self.db.write(fn)

    def delete_collection(self, actor: Actor, registry: str, name: str) -> None:
        """Delete a collection (its links only; sources stay). R7: admins only if it
        holds a protected alias."""

        def fn(repo: Repo) -> None:
            reg, role, coll = self._collection(repo, actor, registry, name, lock=True)
            held = repo.collection_holds_protected(coll.id, reg.id)
            if held:
                check(role, Permission.PROTECTED_ALIAS_EDIT, reg)
            check(role, Permission.COLLECTION_EDIT, reg)
            self._record(repo, actor, "collection_delete", coll, collection=coll.name)
            repo.delete_collection(coll.id)

        self.db.write(fn)


def _key_view(key: ApiKey, user_name: str) -> KeyView:
    return KeyView(
        prefix=key.prefix,
        user=user_name,
        created_at=as_utc(key.created_at),
        revoked_at=as_utc(key.revoked_at) if key.revoked_at is not None else None,
    )
