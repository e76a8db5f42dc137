"""The repository: every SQL statement the service needs, behind domain verbs.

A :class:`Repo` wraps one open transaction. The service decides *what* may
happen (rules, roles); the repository only reads and writes rows. Writers of a
collection lock its row first (``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serializes writers), so index allocation, alias
moves and ``latest`` are decided by one writer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from regalia.store.models import (
    Alias,
    ApiKey,
    Blob,
    Collection,
    CollectionTag,
    HistoryEvent,
    Membership,
    Organization,
    Project,
    ProtectedAliasName,
    Registry,
    RegistryMember,
    Run,
    RunInput,
    Team,
    TeamMember,
    User,
    Version,
    VersionFile,
    VersionTag,
)


class Repo:
    """Domain-level reads and writes inside one transaction."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.dialect = session.get_bind().dialect.name

    # -- generic ------------------------------------------------------------
    def _insert_ignore(self, model: Any, values: dict[str, Any] | list[dict[str, Any]]) -> None:
        if not values:
            return
        ins = pg_insert if self.dialect == "postgresql" else sqlite_insert
        self.s.execute(ins(model).values(values).on_conflict_do_nothing())

    def add(self, obj: Any) -> Any:
        self.s.add(obj)
        self.s.flush()
        return obj

    def get(self, model: Any, id_: int) -> Any:
        return self.s.get(model, id_)

    # -- organizations, users, teams, keys ------------------------------------
    def org_by_name(self, name: str) -> Organization | None:
        return self.s.scalar(select(Organization).where(Organization.name == name))

    def first_org(self) -> Organization | None:
        return self.s.scalar(select(Organization).order_by(Organization.id).limit(1))

    def user_by_name(self, org_id: int, name: str) -> User | None:
        return self.s.scalar(
            select(User).where(User.org_id == org_id, User.name_key == name.lower())
        )

    def users(self, org_id: int) -> Sequence[User]:
        return self.s.scalars(select(User).where(User.org_id == org_id).order_by(User.name)).all()

    def user_by_key_hash(self, key_hash: str) -> User | None:
        return self.s.scalar(
            select(User)
            .join(ApiKey, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )

    def revoke_keys(self, user_id: int, when: datetime) -> int:
        res = self.s.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=when)
        )
        return int(getattr(res, "rowcount", 0) or 0)

    def team_by_name(self, org_id: int, name: str) -> Team | None:
        return self.s.scalar(
            select(Team).where(Team.org_id == org_id, Team.name_key == name.lower())
        )

    def teams_of(self, user_id: int) -> Sequence[Team]:
        return self.s.scalars(
            select(Team)
            .join(TeamMember, TeamMember.team_id == Team.id)
            .where(TeamMember.user_id == user_id)
            .order_by(Team.name)
        ).all()

    def team_member_names(self, team_id: int) -> list[str]:
        return list(
            self.s.scalars(
                select(User.name)
                .join(TeamMember, TeamMember.user_id == User.id)
                .where(TeamMember.team_id == team_id)
                .order_by(User.name)
            )
        )

    def add_team_member(self, team_id: int, user_id: int) -> None:
        self._insert_ignore(TeamMember, {"team_id": team_id, "user_id": user_id})

    # -- registries -------------------------------------------------------------
    def registry_by_name(self, org_id: int, name: str) -> Registry | None:
        return self.s.scalar(
            select(Registry).where(Registry.org_id == org_id, Registry.name_key == name.lower())
        )

    def registries(self, org_id: int) -> Sequence[Registry]:
        return self.s.scalars(
            select(Registry).where(Registry.org_id == org_id).order_by(Registry.name_key)
        ).all()

    def registry_grants(
        self, registry_ids: Iterable[int], user_id: int, team_ids: Sequence[int]
    ) -> dict[int, list[str]]:
        """Roles given in each registry to the user or any of the teams."""
        ids = list(registry_ids)
        if not ids:
            return {}
        cond = RegistryMember.user_id == user_id
        if team_ids:
            cond = or_(cond, RegistryMember.team_id.in_(list(team_ids)))
        rows = self.s.execute(
            select(RegistryMember.registry_id, RegistryMember.role).where(
                RegistryMember.registry_id.in_(ids), cond
            )
        ).all()
        out: dict[int, list[str]] = {}
        for rid, role in rows:
            out.setdefault(rid, []).append(role)
        return out

    def registry_members(self, registry_id: int) -> list[tuple[str, str, str]]:
        users = self.s.execute(
            select(User.name, RegistryMember.role)
            .join(User, User.id == RegistryMember.user_id)
            .where(RegistryMember.registry_id == registry_id)
        ).all()
        teams = self.s.execute(
            select(Team.name, RegistryMember.role)
            .join(Team, Team.id == RegistryMember.team_id)
            .where(RegistryMember.registry_id == registry_id)
        ).all()
        return [("user", n, r) for n, r in users] + [("team", n, r) for n, r in teams]

    def set_registry_member(
        self, registry_id: int, *, user_id: int | None, team_id: int | None, role: str | None
    ) -> str | None:
        """Give, change or (role=None) remove a role; returns the previous role."""
        cond = (
            RegistryMember.user_id == user_id
            if user_id is not None
            else RegistryMember.team_id == team_id
        )
        row = self.s.scalar(
            select(RegistryMember).where(RegistryMember.registry_id == registry_id, cond)
        )
        previous = row.role if row else None
        if role is None:
            if row is not None:
                self.s.delete(row)
        elif row is None:
            self.s.add(
                RegistryMember(registry_id=registry_id, user_id=user_id, team_id=team_id, role=role)
            )
        else:
            row.role = role
        self.s.flush()
        return previous

    def protected_aliases(self, registry_id: int) -> list[str]:
        return list(
            self.s.scalars(
                select(ProtectedAliasName.name)
                .where(ProtectedAliasName.registry_id == registry_id)
                .order_by(ProtectedAliasName.name_key)
            )
        )

    def protected_keys(self, registry_ids: Iterable[int]) -> dict[int, set[str]]:
        ids = list(registry_ids)
        out: dict[int, set[str]] = {i: set() for i in ids}
        if ids:
            for rid, key in self.s.execute(
                select(ProtectedAliasName.registry_id, ProtectedAliasName.name_key).where(
                    ProtectedAliasName.registry_id.in_(ids)
                )
            ):
                out[rid].add(key)
        return out

    def add_protected_alias(self, registry_id: int, name: str, when: datetime) -> bool:
        exists = self.s.get(ProtectedAliasName, (registry_id, name.lower()))
        if exists:
            return False
        self.add(
            ProtectedAliasName(
                registry_id=registry_id, name_key=name.lower(), name=name, created_at=when
            )
        )
        return True

    def remove_protected_alias(self, registry_id: int, name: str) -> bool:
        res = self.s.execute(
            delete(ProtectedAliasName).where(
                ProtectedAliasName.registry_id == registry_id,
                ProtectedAliasName.name_key == name.lower(),
            )
        )
        return bool(getattr(res, "rowcount", 0))

    def collection_counts(self, registry_ids: Iterable[int]) -> dict[int, int]:
        ids = list(registry_ids)
        if not ids:
            return {}
        rows = self.s.execute(
            select(Collection.registry_id, func.count())
            .where(Collection.registry_id.in_(ids))
            .group_by(Collection.registry_id)
        ).all()
        return {int(rid): int(n) for rid, n in rows if rid is not None}

    # -- projects and runs ---------------------------------------------------
    def ensure_project(self, org_id: int, entity: str, name: str, when: datetime) -> Project:
        self._insert_ignore(
            Project, {"org_id": org_id, "entity": entity, "name": name, "created_at": when}
        )
        project = self.project(org_id, entity, name)
        assert project is not None
        return project

    def project(self, org_id: int, entity: str, name: str) -> Project | None:
        return self.s.scalar(
            select(Project).where(
                Project.org_id == org_id, Project.entity == entity, Project.name == name
            )
        )

    def run_by_key(self, run_key: str) -> Run | None:
        return self.s.scalar(select(Run).where(Run.run_key == run_key))

    def add_run_input(self, run_id: int, version_id: int) -> None:
        self._insert_ignore(RunInput, {"run_id": run_id, "version_id": version_id})

    def runs_using(self, version_id: int) -> list[str]:
        return list(
            self.s.scalars(
                select(Run.run_key)
                .join(RunInput, RunInput.run_id == Run.id)
                .where(RunInput.version_id == version_id)
                .order_by(Run.id)
            )
        )

    # -- collections -----------------------------------------------------------
    def collection_in_registry(
        self, registry_id: int, name: str, *, lock: bool = False
    ) -> Collection | None:
        stmt = select(Collection).where(
            Collection.registry_id == registry_id, Collection.name_key == name.lower()
        )
        return self.s.scalar(stmt.with_for_update() if lock else stmt)

    def sequence(self, project_id: int, name: str, *, lock: bool = False) -> Collection | None:
        stmt = select(Collection).where(
            Collection.project_id == project_id, Collection.name_key == name.lower()
        )
        return self.s.scalar(stmt.with_for_update() if lock else stmt)

    def lock_collection(self, collection_id: int) -> Collection:
        coll = self.s.scalar(
            select(Collection)
            .where(Collection.id == collection_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert coll is not None
        return coll

    def ensure_collection(self, values: dict[str, Any]) -> Collection:
        """Create the collection unless it exists (a concurrent creator may win); lock it."""
        self._insert_ignore(Collection, values)
        if values["kind"] == "portfolio":
            coll = self.collection_in_registry(values["registry_id"], values["name"], lock=True)
        else:
            coll = self.sequence(values["project_id"], values["name"], lock=True)
        assert coll is not None
        return coll

    def allocate_index(self, collection_id: int) -> int:
        """Atomically take the collection's next index (R2: never max + 1)."""
        new_next = self.s.scalar(
            update(Collection)
            .where(Collection.id == collection_id)
            .values(next_index=Collection.next_index + 1)
            .returning(Collection.next_index)
        )
        assert new_next is not None
        return int(new_next) - 1

    def registry_collections(self, registry_id: int) -> Sequence[Collection]:
        return self.s.scalars(
            select(Collection)
            .where(Collection.registry_id == registry_id)
            .order_by(Collection.name_key)
        ).all()

    def collection_tags(self, collection_ids: Iterable[int]) -> dict[int, list[str]]:
        ids = list(collection_ids)
        out: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for cid, tag in self.s.execute(
                select(CollectionTag.collection_id, CollectionTag.tag)
                .where(CollectionTag.collection_id.in_(ids))
                .order_by(CollectionTag.tag)
            ):
                out[cid].append(tag)
        return out

    def set_collection_tags(self, collection_id: int, add: list[str], remove: list[str]) -> None:
        if remove:
            self.s.execute(
                delete(CollectionTag).where(
                    CollectionTag.collection_id == collection_id, CollectionTag.tag.in_(remove)
                )
            )
        self._insert_ignore(
            CollectionTag, [{"collection_id": collection_id, "tag": t} for t in add]
        )

    def membership_counts(self, collection_ids: Iterable[int]) -> dict[int, int]:
        ids = list(collection_ids)
        if not ids:
            return {}
        rows = self.s.execute(
            select(Membership.collection_id, func.count())
            .where(Membership.collection_id.in_(ids))
            .group_by(Membership.collection_id)
        ).all()
        return {cid: int(n) for cid, n in rows}

    def delete_collection(self, collection_id: int) -> None:
        self.s.execute(delete(Alias).where(Alias.collection_id == collection_id))
        self.s.execute(delete(Membership).where(Membership.collection_id == collection_id))
        self.s.execute(delete(CollectionTag).where(CollectionTag.collection_id == collection_id))
        self.s.execute(delete(Collection).where(Collection.id == collection_id))

    # -- versions ----------------------------------------------------------------
    def version_by_digest(self, sequence_id: int, digest: str) -> Version | None:
        return self.s.scalar(
            select(Version).where(Version.sequence_id == sequence_id, Version.digest == digest)
        )

    def add_files(self, version_id: int, files: Sequence[tuple[str, str, int]]) -> None:
        if files:
            self.s.execute(
                insert(VersionFile),
                [
                    {"version_id": version_id, "path": p, "digest": d, "size": n}
                    for p, d, n in files
                ],
            )

    def add_blobs(self, org_id: int, blobs: dict[str, int], when: datetime) -> None:
        """Record stored blobs and share-lock their rows until commit, so that a
        concurrent delete cannot free them under a version being committed."""
        self._insert_ignore(
            Blob,
            [
                {"org_id": org_id, "digest": d, "size": n, "created_at": when}
                for d, n in blobs.items()
            ],
        )
        self.s.execute(
            select(Blob.digest)
            .where(Blob.org_id == org_id, Blob.digest.in_(list(blobs)))
            .with_for_update(read=True)
        )

    def files(self, version_id: int) -> list[tuple[str, str, int]]:
        return [
            (p, d, int(n))
            for p, d, n in self.s.execute(
                select(VersionFile.path, VersionFile.digest, VersionFile.size)
                .where(VersionFile.version_id == version_id)
                .order_by(VersionFile.path)
            )
        ]

    def version_tags(self, version_ids: Iterable[int]) -> dict[int, list[str]]:
        ids = list(version_ids)
        out: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for vid, tag in self.s.execute(
                select(VersionTag.version_id, VersionTag.tag)
                .where(VersionTag.version_id.in_(ids))
                .order_by(VersionTag.tag)
            ):
                out[vid].append(tag)
        return out

    def add_version_tags(self, version_id: int, tags: list[str]) -> list[str]:
        """Add tags; returns those that were new."""
        have = set(self.version_tags([version_id])[version_id])
        new = [t for t in dict.fromkeys(tags) if t not in have]
        self._insert_ignore(VersionTag, [{"version_id": version_id, "tag": t} for t in new])
        return new

    def remove_version_tags(self, version_id: int, tags: list[str]) -> list[str]:
        have = set(self.version_tags([version_id])[version_id])
        gone = [t for t in dict.fromkeys(tags) if t in have]
        if gone:
            self.s.execute(
                delete(VersionTag).where(
                    VersionTag.version_id == version_id, VersionTag.tag.in_(gone)
                )
            )
        return gone

    def delete_version(self, version_id: int) -> list[str]:
        """Delete a version's rows; return the digests no other version references."""
        digests = set(
            self.s.scalars(select(VersionFile.digest).where(VersionFile.version_id == version_id))
        )
        self.s.execute(delete(RunInput).where(RunInput.version_id == version_id))
        self.s.execute(delete(VersionTag).where(VersionTag.version_id == version_id))
        self.s.execute(delete(VersionFile).where(VersionFile.version_id == version_id))
        self.s.execute(delete(Version).where(Version.id == version_id))
        if not digests:
            return []
        # Lock the blob rows first: a version being committed with the same content
        # holds them shared, and the reference check below then sees its files.
        self.s.execute(select(Blob.digest).where(Blob.digest.in_(digests)).with_for_update())
        still = set(
            self.s.scalars(
                select(VersionFile.digest).where(VersionFile.digest.in_(digests)).distinct()
            )
        )
        return sorted(digests - still)

    def delete_blob_rows(self, org_id: int, digests: list[str]) -> None:
        if digests:
            self.s.execute(delete(Blob).where(Blob.org_id == org_id, Blob.digest.in_(digests)))

    # -- memberships and aliases -----------------------------------------------------
    def membership_by_index(self, collection_id: int, index: int) -> Membership | None:
        return self.s.scalar(
            select(Membership).where(
                Membership.collection_id == collection_id, Membership.version_index == index
            )
        )

    def membership_by_alias(self, collection_id: int, alias: str) -> Membership | None:
        return self.s.scalar(
            select(Membership)
            .join(Alias, Alias.membership_id == Membership.id)
            .where(Alias.collection_id == collection_id, Alias.name_key == alias.lower())
        )

    def membership_of_version(self, collection_id: int, version_id: int) -> Membership | None:
        return self.s.scalar(
            select(Membership).where(
                Membership.collection_id == collection_id, Membership.version_id == version_id
            )
        )

    def memberships_of_version(self, version_id: int) -> Sequence[Membership]:
        return self.s.scalars(
            select(Membership).where(Membership.version_id == version_id).order_by(Membership.id)
        ).all()

    def highest_membership(self, collection_id: int) -> Membership | None:
        return self.s.scalar(
            select(Membership)
            .where(Membership.collection_id == collection_id)
            .order_by(Membership.version_index.desc())
            .limit(1)
        )

    def alias(self, collection_id: int, name: str) -> Alias | None:
        return self.s.scalar(
            select(Alias).where(
                Alias.collection_id == collection_id, Alias.name_key == name.lower()
            )
        )

    def aliases_of(self, membership_ids: Iterable[int]) -> dict[int, list[str]]:
        ids = list(membership_ids)
        out: dict[int, list[str]] = {i: [] for i in ids}
        if ids:
            for mid, name in self.s.execute(
                select(Alias.membership_id, Alias.name)
                .where(Alias.membership_id.in_(ids))
                .order_by(Alias.id)
            ):
                out[mid].append(name)
        return out

    def set_alias(
        self, collection_id: int, membership_id: int, name: str, when: datetime
    ) -> int | None:
        """Point alias ``name`` at the membership; return the membership it left (or None).

        One UPDATE (or INSERT): the alias is never on two versions or none.
        """
        row = self.alias(collection_id, name)
        if row is None:
            self.add(
                Alias(
                    collection_id=collection_id,
                    membership_id=membership_id,
                    name=name,
                    name_key=name.lower(),
                    updated_at=when,
                )
            )
            return None
        previous = row.membership_id
        if previous != membership_id:
            row.membership_id = membership_id
            row.name = name
            row.updated_at = when
            self.s.flush()
        return previous

    def remove_alias(self, alias_id: int) -> None:
        self.s.execute(delete(Alias).where(Alias.id == alias_id))

    def delete_membership(self, membership_id: int) -> None:
        self.s.execute(delete(Alias).where(Alias.membership_id == membership_id))
        self.s.execute(delete(Membership).where(Membership.id == membership_id))

    def protected_aliases_on_links(self, version_id: int) -> list[tuple[str, str]]:
        """(registry name, alias) for every protected alias held by a link of the version."""
        rows = self.s.execute(
            select(Registry.name, Alias.name)
            .select_from(Membership)
            .join(Collection, Collection.id == Membership.collection_id)
            .join(Registry, Registry.id == Collection.registry_id)
            .join(Alias, Alias.membership_id == Membership.id)
            .join(
                ProtectedAliasName,
                and_(
                    ProtectedAliasName.registry_id == Registry.id,
                    ProtectedAliasName.name_key == Alias.name_key,
                ),
            )
            .where(Membership.version_id == version_id)
        ).all()
        return [(r, a) for r, a in rows]

    def collection_holds_protected(self, collection_id: int, registry_id: int) -> list[str]:
        return list(
            self.s.scalars(
                select(Alias.name)
                .join(
                    ProtectedAliasName,
                    and_(
                        ProtectedAliasName.registry_id == registry_id,
                        ProtectedAliasName.name_key == Alias.name_key,
                    ),
                )
                .where(Alias.collection_id == collection_id)
            )
        )

    # -- history ------------------------------------------------------------------------
    def record(self, **values: Any) -> None:
        if values.get("alias") is not None:
            values["alias_key"] = values["alias"].lower()
        values.setdefault("details", {})
        self.s.add(HistoryEvent(**values))

    def history(
        self,
        *,
        org_id: int,
        collection_id: int | None = None,
        registry_id: int | None = None,
        alias: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
        until: datetime | None = None,
        ascending: bool = False,
    ) -> Sequence[HistoryEvent]:
        stmt = select(HistoryEvent).where(HistoryEvent.org_id == org_id)
        if collection_id is not None:
            stmt = stmt.where(HistoryEvent.collection_id == collection_id)
        if registry_id is not None:
            stmt = stmt.where(HistoryEvent.registry_id == registry_id)
        if alias is not None:
            stmt = stmt.where(HistoryEvent.alias_key == alias.lower())
        if until is not None:
            stmt = stmt.where(HistoryEvent.created_at <= until)
        if before_id is not None:
            stmt = stmt.where(HistoryEvent.id < before_id)
        order = HistoryEvent.id.asc() if ascending else HistoryEvent.id.desc()
        return self.s.scalars(stmt.order_by(order).limit(limit)).all()
