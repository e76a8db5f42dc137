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
from typing import Any, cast

from sqlalchemy import Row, and_, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from regalia.core.names import name_key
from regalia.store import outbox, views
from regalia.store import statements as st
from regalia.store.models import (
    Alias,
    ApiKey,
    Blob,
    BlobCheck,
    BlobClaim,
    BlobGrant,
    BlobMd5,
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
    RunFile,
    RunInput,
    SecretKeyCheck,
    StoreIdentity,
    Team,
    TeamMember,
    User,
    Version,
    VersionFile,
    VersionTag,
    WandbDraftFile,
    WebSession,
)


class Repo:
    """Domain-level reads and writes inside one transaction."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.dialect = session.get_bind().dialect.name
        self._conn: Connection | None = None
        self._history: list[dict[str, Any]] = []
        # Automation deliveries queued in this unit of work (the worker is woken after commit).
        self.queued_deliveries = 0

    @property
    def conn(self) -> Connection:
        """The transaction's Core connection, for the hot read paths; pending ORM
        changes are flushed first so the reads see them."""
        if self._conn is None:
            self._conn = self.s.connection()
        if self.s.dirty or self.s.new or self.s.deleted:
            self.s.flush()
        return self._conn

    def version_rows(self, membership_ids: Sequence[int]) -> dict[int, Row[Any]]:
        return views.version_rows(self.conn, membership_ids)

    def version_extras(
        self, mids: Iterable[int], vids: Iterable[int], cids: Iterable[int], rids: Iterable[int]
    ) -> views.VersionExtras:
        return views.VersionExtras(self.conn, mids, vids, cids, rids)

    def collection_rows(self, collection_ids: Sequence[int]) -> dict[int, Row[Any]]:
        return views.collection_rows(self.conn, collection_ids)

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

    def user_by_name(self, org_id: int, name: str) -> User | None:
        return self.s.scalar(
            select(User).where(User.org_id == org_id, User.name_key == name_key(name))
        )

    def users(self, org_id: int) -> Sequence[User]:
        return self.s.scalars(select(User).where(User.org_id == org_id).order_by(User.name)).all()

    def user_by_key_hash(self, key_hash: str) -> User | None:
        return self.s.scalar(
            select(User)
            .join(ApiKey, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )

    def has_active_key(self, user_id: int) -> bool:
        return (
            self.s.scalar(
                select(ApiKey.id)
                .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
                .limit(1)
            )
            is not None
        )

    def key_revoked_at(self, key_hash: str) -> datetime | None:
        """When the key with this hash was revoked (None: no such key, or active)."""
        return self.s.scalar(select(ApiKey.revoked_at).where(ApiKey.key_hash == key_hash))

    def store_tag(self) -> str | None:
        """This database's tag (see ``StoreIdentity``); None before the first key."""
        return self.s.scalar(select(StoreIdentity.tag).where(StoreIdentity.id == 1))

    def ensure_store_tag(self, new: str, now: datetime) -> str:
        """This database's tag, made ``new`` if it has none (safe under concurrency)."""
        tag = self.store_tag()
        if tag is None:
            self._insert_ignore(StoreIdentity, {"id": 1, "tag": new, "created_at": now})
            tag = self.store_tag()
        assert tag is not None
        return tag

    def ensure_key_fingerprint(self, org_id: int, new: str, now: datetime) -> str:
        """The organization's recorded secret key fingerprint, made ``new`` if it has
        none yet (safe under concurrency: the first node to record one wins)."""
        query = select(SecretKeyCheck.fingerprint).where(SecretKeyCheck.org_id == org_id)
        found = self.s.scalar(query)
        if found is None:
            row = {"org_id": org_id, "fingerprint": new, "created_at": now}
            self._insert_ignore(SecretKeyCheck, row)
            found = self.s.scalar(query)
        assert found is not None
        return found

    def active_key_id(self, key_hash: str) -> int | None:
        return self.s.scalar(
            select(ApiKey.id).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )

    # -- web UI sessions (only the token's hash is stored) -------------------------------
    def add_web_session(
        self, token_hash: str, api_key_id: int, created_at: datetime, expires_at: datetime
    ) -> None:
        self.s.execute(
            insert(WebSession).values(
                token_hash=token_hash,
                api_key_id=api_key_id,
                created_at=created_at,
                expires_at=expires_at,
            )
        )

    def web_session_user(self, token_hash: str, now: datetime) -> int | None:
        """The user of a live session: not expired, its API key not revoked (one
        primary-key lookup joined to the key)."""
        row = self.conn.execute(st.WEB_SESSION_USER, {"token": token_hash, "now": now}).first()
        return None if row is None else int(row[0])

    def delete_web_session(self, token_hash: str) -> bool:
        res = self.s.execute(delete(WebSession).where(WebSession.token_hash == token_hash))
        return bool(getattr(res, "rowcount", 0))

    def sweep_web_sessions(self, now: datetime) -> int:
        """Delete expired sessions and those of revoked keys."""
        revoked = select(ApiKey.id).where(ApiKey.revoked_at.is_not(None))
        res = self.s.execute(
            delete(WebSession).where(
                (WebSession.expires_at <= now) | WebSession.api_key_id.in_(revoked)
            )
        )
        return int(getattr(res, "rowcount", 0) or 0)

    def api_keys(self, org_id: int, user_id: int | None = None) -> list[tuple[ApiKey, str]]:
        """The organization's API keys (or one user's), oldest first, each with
        its user's name; revoked keys included."""
        query = (
            select(ApiKey, User.name)
            .join(User, User.id == ApiKey.user_id)
            .where(User.org_id == org_id)
            .order_by(ApiKey.created_at, ApiKey.id)
        )
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        return [(key, str(name)) for key, name in self.s.execute(query)]

    def revoke_keys(self, user_id: int, when: datetime) -> int:
        res = self.s.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=when)
        )
        return int(getattr(res, "rowcount", 0) or 0)

    def team_by_name(self, org_id: int, name: str) -> Team | None:
        return self.s.scalar(
            select(Team).where(Team.org_id == org_id, Team.name_key == name_key(name))
        )

    def teams_of(self, user_id: int) -> Sequence[Team]:
        return self.s.scalars(
            select(Team)
            .join(TeamMember, TeamMember.team_id == Team.id)
            .where(TeamMember.user_id == user_id)
            .order_by(Team.name)
        ).all()

    def teams(self, org_id: int) -> Sequence[Team]:
        return self.s.scalars(select(Team).where(Team.org_id == org_id).order_by(Team.name)).all()

    def team_members(self, team_id: int) -> list[tuple[str, str]]:
        """``(user name, team role)`` of every member of the team, by name."""
        rows = self.s.execute(
            select(User.name, TeamMember.role)
            .join(TeamMember, TeamMember.user_id == User.id)
            .where(TeamMember.team_id == team_id)
            .order_by(User.name)
        ).all()
        return [(n, r) for n, r in rows]

    def team_role(self, team_id: int, user_id: int, *, lock: bool = False) -> str | None:
        """The user's role in the team ('member' or 'admin'), None if not a member.
        With ``lock`` the row stays locked until commit (PostgreSQL)."""
        stmt = select(TeamMember.role).where(
            TeamMember.team_id == team_id, TeamMember.user_id == user_id
        )
        return self.s.scalar(stmt.with_for_update() if lock else stmt)

    def team_admin_count(self, team_id: int) -> int:
        return int(
            self.s.scalar(
                select(func.count()).where(
                    TeamMember.team_id == team_id, TeamMember.role == "admin"
                )
            )
            or 0
        )

    def add_team_member(self, team_id: int, user_id: int, role: str = "member") -> None:
        """Add a member (nothing happens if the user is one already)."""
        self._insert_ignore(TeamMember, {"team_id": team_id, "user_id": user_id, "role": role})

    def remove_team_member(self, team_id: int, user_id: int) -> None:
        self.s.execute(
            delete(TeamMember).where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
        )

    def set_team_role(self, team_id: int, user_id: int, role: str) -> None:
        self.s.execute(
            update(TeamMember)
            .where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
            .values(role=role)
        )

    def lock_team(self, team_id: int) -> None:
        """Serialize changes of one team's members (PostgreSQL; SQLite's writers
        are serialized already), so two admins cannot both step down at once."""
        self.s.execute(select(Team.id).where(Team.id == team_id).with_for_update())

    def team_registry_roles(self, team_id: int) -> list[tuple[int, str]]:
        """``(registry id, role)`` of every registry where the team holds a role."""
        rows = self.s.execute(
            select(RegistryMember.registry_id, RegistryMember.role)
            .where(RegistryMember.team_id == team_id)
            .order_by(RegistryMember.registry_id)
        ).all()
        return [(int(rid), role) for rid, role in rows]

    # -- idempotency ------------------------------------------------------------
    def idempotent_result(self, user_id: int, key: str) -> tuple[str, int | None] | None:
        """``(operation, membership_id)`` recorded for a request key, if any."""
        row = self.conn.execute(st.IDEMPOTENT_RESULT, {"uid": user_id, "key": key}).first()
        return None if row is None else (row[0], row[1])

    def record_idempotent(
        self, user_id: int, key: str, operation: str, membership_id: int | None, when: datetime
    ) -> None:
        self.conn.execute(
            st.RECORD_IDEMPOTENT,
            {
                "user_id": user_id,
                "key": key,
                "operation": operation,
                "membership_id": membership_id,
                "created_at": when,
            },
        )

    # -- blob checks --------------------------------------------------------------
    def blob_checks(self, digests: Sequence[str]) -> dict[str, tuple[int, str]]:
        """``digest -> (size, check)`` for the contents whose check is known."""
        if not digests:
            return {}
        known: dict[str, tuple[int, str]] = {}
        rows = self.s.execute(
            select(BlobCheck.digest, BlobCheck.size, BlobCheck.check).where(
                BlobCheck.digest.in_(list(digests))
            )
        )
        for digest, size, check in rows:
            known[digest] = (size, check)
        rest = [d for d in digests if d not in known]
        if rest:
            rows = self.s.execute(
                select(VersionFile.digest, VersionFile.size, VersionFile.check).where(
                    VersionFile.digest.in_(rest), VersionFile.check.is_not(None)
                )
            )
            for digest, size, check in rows:
                known.setdefault(digest, (size, check))
        return known

    def record_blob_check(self, digest: str, size: int, check: str) -> None:
        self.record_blob_checks([(digest, size, check)])

    def record_blob_checks(self, checks: Sequence[tuple[str, int, str]]) -> None:
        """Remember ``(digest, size, check)`` of received contents (known ones stay)."""
        rows = [{"digest": d, "size": n, "check": c} for d, n, c in dict.fromkeys(checks)]
        self._insert_ignore(BlobCheck, rows)

    # -- content access (SPEC §7: proof of possession) ---------------------------------
    def grant_blobs(
        self, org_id: int, user_id: int, digests: Iterable[str], when: datetime
    ) -> None:
        """The user sent these contents now: grant (or renew) their right to reference them."""
        rows = [
            {"user_id": user_id, "digest": d, "org_id": org_id, "granted_at": when}
            for d in dict.fromkeys(digests)
        ]
        if not rows:
            return
        ins = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = ins(BlobGrant)
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[BlobGrant.user_id, BlobGrant.digest],
                set_={"granted_at": stmt.excluded.granted_at, "org_id": stmt.excluded.org_id},
            ),
            rows,
        )

    def granted_digests(self, user_id: int, digests: Sequence[str], since: datetime) -> set[str]:
        """Those of ``digests`` the user was granted at ``since`` or later (primary key)."""
        out: set[str] = set()
        for chunk in _chunks(digests):
            params = {"uid": user_id, "digests": chunk, "since": since}
            out.update(self.conn.execute(st.GRANTED, params).scalars())
        return out

    def downloadable_digests(
        self,
        org_id: int,
        user_id: int,
        digests: Sequence[str],
        *,
        scan: int,
        everything: bool,
        entity_keys: Sequence[str],
        team_ids: Sequence[int],
        roles: Sequence[str],
        org_visible: bool,
    ) -> set[str]:
        """Those of ``digests`` that one of the first ``scan`` versions of the org
        holding them lets the user download (one query; the rules of who may
        download come from the service, see ``statements.DOWNLOADABLE``)."""
        params: dict[str, Any] = {
            "org": org_id,
            "uid": user_id,
            "scan": scan,
            "everything": everything,
            "entities": list(entity_keys),
            "tids": list(team_ids),
            "roles": list(roles),
            "org_visible": org_visible,
        }
        out: set[str] = set()
        for chunk in _chunks(digests):
            out.update(self.conn.execute(st.DOWNLOADABLE, {**params, "digests": chunk}).scalars())
        return out

    def expire_grants(self, before: datetime) -> int:
        """Delete grants given before ``before``; returns how many."""
        result = self.s.execute(delete(BlobGrant).where(BlobGrant.granted_at < before))
        return int(cast(Any, result).rowcount or 0)

    # -- registries -------------------------------------------------------------
    def registry_by_name(
        self, org_id: int, name: str, *, for_update: bool = False
    ) -> Registry | None:
        """The registry named ``name`` (ignoring case): a detached record, or with
        ``for_update`` the session's object, whose changes are saved on commit."""
        if for_update:
            return self.s.scalar(
                select(Registry).where(
                    Registry.org_id == org_id, Registry.name_key == name_key(name)
                )
            )
        row = self.conn.execute(st.REGISTRY_BY_NAME, {"org": org_id, "key": name_key(name)}).first()
        return None if row is None else st.detached(Registry, row._mapping)

    def registry_path(
        self, org_id: int, registry: str, collection: str, ref: str | int
    ) -> tuple[Registry | None, int | None, int | None]:
        """The registry named ``registry``, the id of its collection ``collection``
        and of the membership ``ref`` (an alias, or a version index) names there:
        each None when missing. One query (the resolve hot path)."""
        stmt = st.REGISTRY_PATH_BY_INDEX if isinstance(ref, int) else st.REGISTRY_PATH_BY_ALIAS
        params = {
            "org": org_id,
            "rkey": name_key(registry),
            "ckey": name_key(collection),
            "ref": ref if isinstance(ref, int) else name_key(ref),
        }
        row = self.conn.execute(stmt, params).first()
        if row is None:
            return None, None, None
        return st.detached(Registry, row._mapping), row.path_cid, row.path_mid

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
        rows = self.conn.execute(
            st.GRANTS, {"rids": ids, "uid": user_id, "tids": list(team_ids)}
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
        return views.protected_keys(self.conn, registry_ids)

    def add_protected_alias(self, registry_id: int, name: str, when: datetime) -> bool:
        exists = self.s.get(ProtectedAliasName, (registry_id, name_key(name)))
        if exists:
            return False
        self.add(
            ProtectedAliasName(
                registry_id=registry_id, name_key=name_key(name), name=name, created_at=when
            )
        )
        return True

    def remove_protected_alias(self, registry_id: int, name: str) -> bool:
        res = self.s.execute(
            delete(ProtectedAliasName).where(
                ProtectedAliasName.registry_id == registry_id,
                ProtectedAliasName.name_key == name_key(name),
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

    def run_by_key(self, org_id: int, run_key: str) -> Run | None:
        """A run of the organization by key (the newest, if projects share a key)."""
        return self.s.scalar(
            select(Run)
            .join(Project, Project.id == Run.project_id)
            .where(Project.org_id == org_id, Run.run_key == run_key)
            .order_by(Run.id.desc())
            .limit(1)
        )

    def run_in_project(self, project_id: int, run_key: str) -> Run | None:
        return self.s.scalar(
            select(Run).where(Run.project_id == project_id, Run.run_key == run_key)
        )

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
            Collection.registry_id == registry_id, Collection.name_key == name_key(name)
        )
        return self.s.scalar(stmt.with_for_update() if lock else stmt)

    def sequence(self, project_id: int, name: str, *, lock: bool = False) -> Collection | None:
        stmt = select(Collection).where(
            Collection.project_id == project_id, Collection.name_key == name_key(name)
        )
        return self.s.scalar(stmt.with_for_update() if lock else stmt)

    def membership_context(
        self, membership_id: int
    ) -> tuple[Membership, Collection, Registry | None, Project | None] | None:
        """A membership with its collection and that collection's registry or project,
        as detached records (read-only; change rows through the repository's verbs)."""
        row = self.conn.execute(st.CONTEXT, {"mid": membership_id}).first()
        if row is None:
            return None
        data = row._mapping
        reg = st.detached(Registry, data, "r_") if data["r_id"] is not None else None
        proj = st.detached(Project, data, "p_") if data["p_id"] is not None else None
        return st.detached(Membership, data, "m_"), st.detached(Collection, data, "c_"), reg, proj

    def find_collection(
        self,
        *,
        registry_id: int | None = None,
        project_id: int | None = None,
        name: str,
        lock: bool = False,
    ) -> Collection | None:
        """A portfolio (``registry_id``) or sequence (``project_id``) by name, detached;
        ``lock`` takes its row lock on PostgreSQL."""
        stmt = st.FIND_PORTFOLIO if registry_id is not None else st.FIND_SEQUENCE
        if lock and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        owner = registry_id if registry_id is not None else project_id
        row = self.conn.execute(stmt, {"owner": owner, "key": name_key(name)}).first()
        return None if row is None else st.detached(Collection, row._mapping)

    def lock_collection(self, collection_id: int) -> Collection:
        """The collection's current row, detached, locked on PostgreSQL (SQLite's
        BEGIN IMMEDIATE already serializes writers)."""
        stmt = st.COLLECTION_BY_ID
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt, {"cid": collection_id}).first()
        assert row is not None
        coll: Collection = st.detached(Collection, row._mapping)
        return coll

    def touch_collection(self, collection_id: int, when: datetime) -> None:
        self.conn.execute(
            update(Collection).where(Collection.id == collection_id).values(updated_at=when)
        )

    def ensure_collection(self, values: dict[str, Any]) -> Collection:
        """Create the collection unless it exists (a concurrent creator may win); lock it."""
        self._insert_ignore(Collection, values)
        coll = self.find_collection(
            registry_id=values.get("registry_id"),
            project_id=values.get("project_id"),
            name=values["name"],
            lock=True,
        )
        assert coll is not None
        return coll

    def allocate_index(self, collection_id: int, when: datetime) -> int:
        """Atomically take the collection's next index (R2: never max + 1) for a new
        membership, counting it and touching the collection."""
        new_next = self.conn.execute(st.ALLOCATE, {"cid": collection_id, "when": when}).scalar()
        assert new_next is not None
        return int(new_next) - 1

    def add_membership(
        self, collection_id: int, version_id: int, index: int, user_id: int, when: datetime
    ) -> Membership:
        """Insert a membership; returns it as a detached record."""
        values = {
            "collection_id": collection_id,
            "version_id": version_id,
            "version_index": index,
            "created_by": user_id,
            "created_at": when,
        }
        new_id = self.conn.execute(st.INSERT_MEMBERSHIP, values)
        return st.Record(id=int(new_id.scalar_one()), **values)  # type: ignore[return-value]

    def registry_collections(self, registry_id: int) -> Sequence[Collection]:
        return self.s.scalars(
            select(Collection)
            .where(Collection.registry_id == registry_id)
            .order_by(Collection.name_key)
        ).all()

    def collection_tags(self, collection_ids: Iterable[int]) -> dict[int, list[str]]:
        return views.collection_tags(self.conn, collection_ids)

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

    def add_files(self, version_id: int, files: Sequence[tuple[str, str, int, str | None]]) -> None:
        if files:
            self.s.execute(
                insert(VersionFile),
                [
                    {"version_id": version_id, "path": p, "digest": d, "size": n, "check": c}
                    for p, d, n, c in files
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

    def file_by_digest(
        self, version_id: int, digest: str
    ) -> tuple[str, str, int, str | None] | None:
        row = self.s.execute(
            select(VersionFile.path, VersionFile.digest, VersionFile.size, VersionFile.check)
            .where(VersionFile.version_id == version_id, VersionFile.digest == digest)
            .limit(1)
        ).first()
        return None if row is None else (row[0], row[1], int(row[2]), row[3])

    def files(self, version_id: int) -> list[tuple[str, str, int, str | None]]:
        return [
            (p, d, int(n), c)
            for p, d, n, c in self.s.execute(
                select(VersionFile.path, VersionFile.digest, VersionFile.size, VersionFile.check)
                .where(VersionFile.version_id == version_id)
                .order_by(VersionFile.path)
            )
        ]

    def version_tags(self, version_ids: Iterable[int]) -> dict[int, list[str]]:
        return views.version_tags(self.conn, version_ids)

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

    def delete_version(self, version_id: int) -> None:
        """Delete a version's rows. Its contents stay in the store: garbage
        collection frees those no version references (``service/gc.py``)."""
        self.s.execute(delete(RunInput).where(RunInput.version_id == version_id))
        self.s.execute(delete(VersionTag).where(VersionTag.version_id == version_id))
        self.s.execute(delete(VersionFile).where(VersionFile.version_id == version_id))
        self.s.execute(delete(Version).where(Version.id == version_id))

    # -- garbage collection (service/gc.py) ---------------------------------------------
    def claim_blobs(self, digests: Iterable[str], when: datetime) -> None:
        """Claim contents at ``when``: upsert their ``blob_claims`` rows, which
        also locks them until commit (sorted: one lock order for every writer).
        Waits for a garbage collection holding one of them."""
        rows = [{"digest": d, "claimed_at": when} for d in sorted(set(digests))]
        if not rows:
            return
        ins = pg_insert if self.dialect == "postgresql" else sqlite_insert
        stmt = ins(BlobClaim).values(rows)
        self.s.execute(
            stmt.on_conflict_do_update(
                index_elements=[BlobClaim.digest],
                set_={"claimed_at": stmt.excluded.claimed_at},
            )
        )

    def lock_claims(self, digests: Sequence[str], placeholder: datetime) -> dict[str, datetime]:
        """Lock the claim rows of ``digests`` (sorted; a missing row is made, at
        ``placeholder``) without changing them; returns each one's ``claimed_at``
        as it stands once the lock is held (the newest committed value)."""
        rows = [{"digest": d, "claimed_at": placeholder} for d in sorted(set(digests))]
        if not rows:
            return {}
        ins = pg_insert if self.dialect == "postgresql" else sqlite_insert
        locking = (
            ins(BlobClaim)
            .values(rows)
            .on_conflict_do_update(
                index_elements=[BlobClaim.digest], set_={"claimed_at": BlobClaim.claimed_at}
            )
            .returning(BlobClaim.digest, BlobClaim.claimed_at)
        )
        return {d: at for d, at in self.s.execute(locking)}

    def claimed_since(self, digests: Sequence[str], since: datetime) -> set[str]:
        """Those of ``digests`` claimed at ``since`` or later."""
        out: set[str] = set()
        for chunk in _chunks(digests):
            out.update(
                self.s.scalars(
                    select(BlobClaim.digest).where(
                        BlobClaim.digest.in_(chunk), BlobClaim.claimed_at >= since
                    )
                )
            )
        return out

    def referenced_digests(self, digests: Sequence[str]) -> set[str]:
        """Those of ``digests`` something holds: a version's file, a run's file,
        or a file of a ``wandb`` draft not committed yet (its commit will need it)."""
        out: set[str] = set()
        for chunk in _chunks(digests):
            for column in (VersionFile.digest, RunFile.digest, WandbDraftFile.digest):
                out.update(self.s.scalars(select(column).where(column.in_(chunk)).distinct()))
        return out

    def forget_blobs(self, digests: Sequence[str]) -> None:
        """Delete every row about these contents (freed from the store): the
        organizations' ``blobs`` rows, checks, MD5s, grants and claims."""
        for chunk in _chunks(digests):
            for model in (Blob, BlobCheck, BlobMd5, BlobGrant, BlobClaim):
                self.s.execute(delete(model).where(model.digest.in_(chunk)))

    # -- memberships and aliases -----------------------------------------------------
    def membership_by_index(self, collection_id: int, index: int) -> Membership | None:
        row = self.conn.execute(
            st.MEMBERSHIP_BY_INDEX, {"cid": collection_id, "idx": index}
        ).first()
        return None if row is None else st.detached(Membership, row._mapping)

    def membership_by_alias(self, collection_id: int, alias: str) -> Membership | None:
        row = self.conn.execute(
            st.MEMBERSHIP_BY_ALIAS, {"cid": collection_id, "key": name_key(alias)}
        ).first()
        return None if row is None else st.detached(Membership, row._mapping)

    def membership_of_version(self, collection_id: int, version_id: int) -> Membership | None:
        row = self.conn.execute(
            st.MEMBERSHIP_OF_VERSION, {"cid": collection_id, "vid": version_id}
        ).first()
        return None if row is None else st.detached(Membership, row._mapping)

    def version_source(self, version_id: int) -> tuple[Version, Collection]:
        """A version and its sequence (the source artifact), detached."""
        row = self.conn.execute(st.VERSION_SOURCE, {"vid": version_id}).first()
        assert row is not None
        return st.detached(Version, row._mapping, "v_"), st.detached(Collection, row._mapping, "s_")

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

    def alias(self, collection_id: int, name: str) -> Row[Any] | None:
        """The alias row ``(id, membership_id, name)``, or None."""
        result = self.conn.execute(st.ALIAS_ROW, {"cid": collection_id, "key": name_key(name)})
        return cast("Row[Any] | None", result.first())

    def aliases_of(self, membership_ids: Iterable[int]) -> dict[int, list[str]]:
        return views.aliases_of(self.conn, membership_ids)

    def set_alias(
        self, collection_id: int, membership_id: int, name: str, when: datetime
    ) -> tuple[int, int] | None:
        """Point alias ``name`` at the membership; return the membership it was on before
        as ``(membership id, version index)``, or None if the alias is new.

        One UPDATE (or INSERT): the alias is never on two versions or none.
        """
        key = name_key(name)
        row = self.conn.execute(st.ALIAS_ROW, {"cid": collection_id, "key": key}).first()
        if row is None:
            self.conn.execute(
                insert(Alias).values(
                    collection_id=collection_id,
                    membership_id=membership_id,
                    name=name,
                    name_key=key,
                    updated_at=when,
                )
            )
            return None
        if row.membership_id != membership_id:
            self.conn.execute(
                st.MOVE_ALIAS, {"aid": row.id, "mid": membership_id, "name": name, "when": when}
            )
        return int(row.membership_id), int(row.version_index)

    def remove_alias(self, alias_id: int) -> None:
        self.s.execute(delete(Alias).where(Alias.id == alias_id))

    def delete_membership(self, membership_id: int, collection_id: int) -> None:
        self.s.execute(delete(Alias).where(Alias.membership_id == membership_id))
        self.s.execute(delete(Membership).where(Membership.id == membership_id))
        self.s.execute(
            update(Collection)
            .where(Collection.id == collection_id)
            .values(member_count=Collection.member_count - 1)
        )

    def protected_aliases_on_links(self, version_id: int) -> list[tuple[Registry, str]]:
        """(registry, alias) for every protected alias held by a link of the version."""
        rows = self.s.execute(
            select(Registry, Alias.name)
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
        """Add a history event; events are written together by :meth:`finish`."""
        if values.get("alias") is not None:
            values["alias_key"] = name_key(values["alias"])
        else:
            values.setdefault("alias", None)
            values["alias_key"] = None
        values.setdefault("details", {})
        for key in ("registry_id", "collection_id", "version_id", "version_index", "actor_id"):
            values.setdefault(key, None)
        self._history.append(values)

    def finish(self) -> int:
        """Write what is buffered (history events, and the automation deliveries
        they call for) before the transaction commits; return how many deliveries."""
        if self._history:
            self.conn.execute(insert(HistoryEvent), self._history)
            self.queued_deliveries += outbox.enqueue(self.conn, self._history)
            self._history = []
        return self.queued_deliveries

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
            stmt = stmt.where(HistoryEvent.alias_key == name_key(alias))
        if until is not None:
            stmt = stmt.where(HistoryEvent.created_at <= until)
        if before_id is not None:
            stmt = stmt.where(HistoryEvent.id < before_id)
        order = HistoryEvent.id.asc() if ascending else HistoryEvent.id.desc()
        return self.s.scalars(stmt.order_by(order).limit(limit)).all()


def _chunks(items: Sequence[str], size: int = 1000) -> Iterable[list[str]]:
    """``items`` in lists of at most ``size`` (bounded ``IN`` lists)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
