"""``Api``: read and manage registries (W&B's public API names).

``Api().registries(filter=...)`` -> ``.collections(filter=...)`` ->
``.versions(filter=...)`` narrow step by step; each is a lazy iterator that
pages through the server-side (SQL) results with a cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from regalia.sdk.artifact import Artifact
from regalia.sdk.automations import Automation
from regalia.sdk.backend import connect
from regalia.service.views import CollectionView, MemberView, Page, RegistryView

if TYPE_CHECKING:
    from regalia.sdk.backend import Backend

T = TypeVar("T")
Filter = dict[str, Any] | None
PAGE_SIZE = 100


class _Paged(Generic[T]):
    """A lazy iterator over every page of a listing."""

    def __init__(
        self,
        fetch: Callable[[str | None, int], Page],
        wrap: Callable[[Any], T],
        per_page: int = PAGE_SIZE,
    ) -> None:
        self._fetch = fetch
        self._wrap = wrap
        self._per_page = per_page

    def __iter__(self) -> Iterator[T]:
        cursor: str | None = None
        while True:
            page = self._fetch(cursor, self._per_page)
            for item in page.items:
                yield self._wrap(item)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getitem__(self, index: int) -> T:
        for i, item in enumerate(self):
            if i == index:
                return item
        raise IndexError(index)


class Versions(_Paged[Artifact]):
    """Linked versions matching the filters, newest first by default."""


class Collections(_Paged["Collection"]):
    def __init__(
        self, backend: Backend, registry_filter: Filter, filter: Filter, order: str
    ) -> None:
        self._backend = backend
        self._registry_filter = registry_filter
        self._filter = filter
        super().__init__(
            lambda cursor, limit: backend.find_collections(
                registry_filter=registry_filter,
                filter=filter,
                order=order,
                cursor=cursor,
                limit=limit,
            ),
            lambda view: Collection(backend, view),
        )

    def versions(self, filter: Filter = None, order: str = "-created_at") -> Versions:
        backend = self._backend
        return Versions(
            lambda cursor, limit: backend.find_versions(
                registry_filter=self._registry_filter,
                collection_filter=self._filter,
                filter=filter,
                order=order,
                cursor=cursor,
                limit=limit,
            ),
            lambda view: Artifact._from_view(backend, view),
        )


class Registries(_Paged["Registry"]):
    def __init__(self, backend: Backend, filter: Filter, order: str = "name") -> None:
        self._backend = backend
        self._filter = filter
        super().__init__(
            lambda cursor, limit: backend.find_registries(
                filter=filter, order=order, cursor=cursor, limit=limit
            ),
            lambda view: Registry(backend, view),
        )

    def collections(self, filter: Filter = None, order: str = "name") -> Collections:
        return Collections(self._backend, self._filter, filter, order)

    def versions(self, filter: Filter = None, order: str = "-created_at") -> Versions:
        return Collections(self._backend, self._filter, None, "name").versions(filter, order)


class Collection:
    """A registry collection: a named list of linked versions of one type."""

    def __init__(self, backend: Backend, view: CollectionView) -> None:
        self._backend = backend
        self._view = view
        self.description: str = view.description
        self.tags: list[str] = list(view.tags)

    name = property(lambda self: self._view.name)
    type = property(lambda self: self._view.type)
    registry = property(lambda self: self._view.registry)
    path = property(lambda self: self._view.path)
    version_count = property(lambda self: self._view.version_count)
    created_at = property(lambda self: self._view.created_at)
    updated_at = property(lambda self: self._view.updated_at)

    def versions(self, filter: Filter = None, order: str = "-created_at") -> Versions:
        backend, view = self._backend, self._view
        return Versions(
            lambda cursor, limit: backend.find_versions(
                registry_filter={"name": view.registry},
                collection_filter={"name": view.name},
                filter=filter,
                order=order,
                cursor=cursor,
                limit=limit,
            ),
            lambda v: Artifact._from_view(backend, v),
        )

    @property
    def _registry(self) -> str:
        registry = self._view.registry
        assert registry is not None, "a registry collection always has its registry"
        return registry

    def save(self) -> None:
        """Persist description and tag changes (the collection's card)."""
        view = self._view
        self._view = self._backend.update_collection(
            self._registry,
            view.name,
            description=self.description if self.description != view.description else None,
            add_tags=[t for t in self.tags if t not in view.tags],
            remove_tags=[t for t in view.tags if t not in self.tags],
        )

    def delete(self) -> None:
        self._backend.delete_collection(self._registry, self._view.name)

    def history(self, limit: int = 100) -> list[Any]:
        return list(self._backend.history(self._registry, self._view.name, limit=limit).items)

    def alias_at(self, alias: str, when: datetime) -> int | None:
        """R11: the index of the version that held ``alias`` at ``when``."""
        return self._backend.alias_at(self._registry, self._view.name, alias, when)

    def __repr__(self) -> str:
        return f"<Collection {self.path}>"


class Registry:
    """A registry: an org-level space of collections, with roles and protected aliases."""

    def __init__(self, backend: Backend, view: RegistryView) -> None:
        self._backend = backend
        self._set(view)

    def _set(self, view: RegistryView) -> None:
        self._view = view
        self.description: str = view.description
        self.visibility: str = view.visibility
        self.artifact_types: list[str] = list(view.artifact_types or [])

    name = property(lambda self: self._view.name)
    full_name = property(lambda self: self._view.full_name)
    role = property(lambda self: self._view.role)
    is_core = property(lambda self: self._view.is_core)
    protected_aliases = property(lambda self: list(self._view.protected_aliases))
    created_at = property(lambda self: self._view.created_at)
    updated_at = property(lambda self: self._view.updated_at)

    @property
    def allow_all_artifact_types(self) -> bool:
        return not self.artifact_types

    def collections(self, filter: Filter = None, order: str = "name") -> Collections:
        return Collections(self._backend, {"name": self.name}, filter, order)

    def versions(self, filter: Filter = None, order: str = "-created_at") -> Versions:
        return self.collections().versions(filter, order)

    def collection(self, name: str) -> Collection:
        return Collection(self._backend, self._backend.get_collection(self.name, name))

    def save(self) -> None:
        """Persist description, visibility and accepted artifact types."""
        view = self._view
        types_changed = self.artifact_types != list(view.artifact_types or [])
        self._set(
            self._backend.update_registry(
                view.name,
                description=self.description if self.description != view.description else None,
                visibility=self.visibility if self.visibility != view.visibility else None,
                artifact_types=self.artifact_types
                if types_changed and self.artifact_types
                else None,
                clear_artifact_types=types_changed and not self.artifact_types,
            )
        )

    def load(self) -> Registry:
        self._set(self._backend.get_registry(self.name))
        return self

    def delete(self) -> None:
        self._backend.delete_registry(self.name)

    # -- members and protected aliases ---------------------------------------------------
    def members(self) -> list[MemberView]:
        return self._backend.registry_members(self.name)

    def add_member(
        self, user: str | None = None, *, team: str | None = None, role: str = "member"
    ) -> list[MemberView]:
        return self._backend.set_registry_role(self.name, user=user, team=team, role=role)

    def update_member(
        self, user: str | None = None, *, team: str | None = None, role: str
    ) -> list[MemberView]:
        return self.add_member(user, team=team, role=role)

    def remove_member(
        self, user: str | None = None, *, team: str | None = None
    ) -> list[MemberView]:
        return self._backend.set_registry_role(self.name, user=user, team=team, role=None)

    def protect_alias(self, alias: str) -> list[str]:
        """Declare ``alias`` protected in this registry (admins only; R7)."""
        self._backend.protect_alias(self.name, alias)
        return list(self.load().protected_aliases)

    def unprotect_alias(self, alias: str) -> list[str]:
        self._backend.unprotect_alias(self.name, alias)
        return list(self.load().protected_aliases)

    def history(self, limit: int = 100) -> list[Any]:
        return list(self._backend.history(self.name, limit=limit).items)

    # -- automations ------------------------------------------------------------------------
    def automations(self) -> list[Automation]:
        return [Automation(self._backend, v) for v in self._backend.automations(self.name)]

    def create_automation(
        self,
        name: str,
        *,
        event: str,
        action: str,
        target: str,
        collection: str | None = None,
        filter_kind: str | None = None,
        filter_value: str | None = None,
        access_token: str | None = None,
        signing_secret: str | None = None,
        secrets: dict[str, str] | None = None,
        payload_template: str | None = None,
        description: str = "",
        enabled: bool = True,
    ) -> Automation:
        """A new automation on this registry (or one of its collections); see SPEC §5.

        ``event``: ``LINK_ARTIFACT``, ``ADD_ARTIFACT_ALIAS``, ``REMOVE_ARTIFACT_ALIAS``,
        ``UNLINK_ARTIFACT`` or ``ADD_ARTIFACT_TAG``. ``filter_kind``: ``alias``,
        ``alias_regex`` or ``tag_regex``. ``action``: ``slack`` (``target`` is the
        incoming-webhook URL) or ``webhook``. Secrets are never shown again.
        """
        view = self._backend.create_automation(
            registry=self.name,
            name=name,
            event=event,
            action=action,
            target=target,
            collection=collection,
            filter_kind=filter_kind,
            filter_value=filter_value,
            access_token=access_token,
            signing_secret=signing_secret,
            secrets=secrets,
            payload_template=payload_template,
            description=description,
            enabled=enabled,
        )
        return Automation(self._backend, view)

    def __repr__(self) -> str:
        return f"<Registry {self.full_name}>"


class Api:
    """Query and manage the registry; ``api_key`` (or ``REGALIA_API_KEY``) picks the user."""

    def __init__(
        self,
        overrides: dict[str, Any] | None = None,
        timeout: float | None = None,
        api_key: str | None = None,
    ) -> None:
        self._backend = connect(api_key=api_key)
        self.overrides = dict(overrides or {})

    @property
    def default_entity(self) -> str:
        return self._backend.actor.name

    @property
    def viewer(self) -> str:
        return self._backend.actor.name

    def artifact(self, name: str, type: str | None = None) -> Artifact:
        """The version a registry path (``wandb-registry-R/C:alias``) or a source path
        (``entity/project/name:alias``) names."""
        from regalia.errors import TypeMismatch

        view = self._backend.resolve(name)
        if type is not None and view.type != type:
            raise TypeMismatch(
                f"artifact {name!r} has type {view.type!r}, not {type!r}", type=view.type
            )
        return Artifact._from_view(self._backend, view)

    def artifact_exists(self, name: str, type: str | None = None) -> bool:
        from regalia.errors import NotFound

        try:
            self.artifact(name, type)
        except NotFound:
            return False
        return True

    def registries(self, organization: str | None = None, filter: Filter = None) -> Registries:
        return Registries(self._backend, filter)

    def registry(self, name: str, organization: str | None = None) -> Registry:
        return Registry(self._backend, self._backend.get_registry(name))

    def automation(self, automation_id: int) -> Automation:
        """One automation, by its id (``registry.automations()`` lists them)."""
        return Automation(self._backend, self._backend.get_automation(automation_id))

    def create_registry(
        self,
        name: str,
        visibility: str = "organization",
        organization: str | None = None,
        description: str | None = None,
        artifact_types: list[str] | None = None,
        *,
        exist_ok: bool = False,
    ) -> Registry:
        view = self._backend.create_registry(
            name,
            visibility=visibility,
            description=description or "",
            artifact_types=artifact_types,
            exist_ok=exist_ok,
        )
        return Registry(self._backend, view)
