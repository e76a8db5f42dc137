"""Lookups the `wandb` client's protocol needs: it names a version by its id
and a collection by ``entity/project/name`` or by id, where Regalia's own API
names memberships. Each only locates (404 for what the caller may not see);
what the caller may do there is the use case's to decide."""

from __future__ import annotations

from regalia.core.names import MAX_ID, REGISTRY_PREFIX
from regalia.errors import CollectionNotFound, RegistryNotFound, VersionNotFound
from regalia.service.access import can_use_entity, registry_role
from regalia.service.base import ServiceBase
from regalia.service.views import Actor
from regalia.store.models import Collection, Project, Registry
from regalia.store.repo import Repo


def _in_range(value: int) -> bool:
    return 0 < value <= MAX_ID


class LookupsMixin(ServiceBase):
    def membership_in(
        self, actor: Actor, version_id: int, entity: str, project: str, collection: str
    ) -> int:
        """The membership of version ``version_id`` in the collection
        ``entity/project/collection`` (a registry's when ``project`` is
        ``wandb-registry-<name>``).

        Raises:
            RegistryNotFound, CollectionNotFound, VersionNotFound: no such
                collection the caller may see, or the version is not in it.
        """

        def fn(repo: Repo) -> int:
            if project.startswith(REGISTRY_PREFIX):
                name = project[len(REGISTRY_PREFIX) :]
                reg = repo.registry_by_name(actor.org_id, name)
                if reg is None or registry_role(repo, actor, reg) is None:
                    raise RegistryNotFound(f"registry {name!r} not found", registry=name)
                coll = repo.collection_in_registry(reg.id, collection)
                where = f"registry {reg.name!r}"
            else:
                proj = repo.project(actor.org_id, entity, project)
                if proj is not None and not can_use_entity(actor, proj.entity):
                    proj = None
                coll = repo.sequence(proj.id, collection) if proj is not None else None
                where = f"project {entity}/{project}"
            if coll is None:
                raise CollectionNotFound(
                    f"collection {collection!r} not found in {where}", collection=collection
                )
            m = repo.membership_of_version(coll.id, version_id) if _in_range(version_id) else None
            if m is None:
                raise VersionNotFound(
                    f"this artifact version is not in {coll.name!r} of {where}",
                    collection=coll.name,
                )
            return m.id

        return self.db.read(fn)

    def membership_in_collection(self, version_id: int, collection_id: int) -> int:
        """The membership of ``version_id`` in the collection with id
        ``collection_id`` (whether the caller may see it is checked by the use
        case it is given to)."""

        def fn(repo: Repo) -> int:
            found = _in_range(version_id) and _in_range(collection_id)
            m = repo.membership_of_version(collection_id, version_id) if found else None
            if m is None:
                raise VersionNotFound("this artifact version is not linked to that collection")
            return m.id

        return self.db.read(fn)

    def visible_memberships(self, actor: Actor, version_id: int) -> tuple[int | None, list[int]]:
        """The membership of version ``version_id`` in its own artifact (None if
        the caller may not see it) and those of its registry links the caller may see.

        Raises:
            VersionNotFound: the caller sees the version nowhere.
        """

        def fn(repo: Repo) -> tuple[int | None, list[int]]:
            source, links = None, []
            for m in repo.memberships_of_version(version_id) if _in_range(version_id) else ():
                found = repo.membership_context(m.id)
                if found is None:
                    continue
                _, _, reg, proj = found
                if reg is not None:
                    if registry_role(repo, actor, reg) is not None:
                        links.append(m.id)
                elif proj is not None and can_use_entity(actor, proj.entity):
                    source = m.id
            if source is None and not links:
                raise VersionNotFound(f"no version with id {version_id}", ref=str(version_id))
            return source, links

        return self.db.read(fn)

    def registry_collection_names(self, actor: Actor, collection_id: int) -> tuple[str, str]:
        """(registry, collection) names of the registry collection with id
        ``collection_id``; 404 unless the caller may see it."""

        def fn(repo: Repo) -> tuple[str, str]:
            coll = repo.get(Collection, collection_id) if _in_range(collection_id) else None
            reg = repo.get(Registry, coll.registry_id) if coll and coll.registry_id else None
            if coll is None or reg is None or registry_role(repo, actor, reg) is None:
                raise CollectionNotFound(
                    "no such registry collection", collection=str(collection_id)
                )
            return reg.name, coll.name

        return self.db.read(fn)

    def sequence_card(self, actor: Actor, sequence_id: int) -> tuple[str, str]:
        """(name, description or "") of the source artifact with id ``sequence_id``;
        404 unless the caller may use its entity."""

        def fn(repo: Repo) -> tuple[str, str]:
            coll = repo.get(Collection, sequence_id) if _in_range(sequence_id) else None
            proj = repo.get(Project, coll.project_id) if coll and coll.project_id else None
            if coll is None or proj is None or not can_use_entity(actor, proj.entity):
                raise CollectionNotFound("no such artifact", collection=str(sequence_id))
            return str(coll.name), str(coll.description or "")

        return self.db.read(fn)
