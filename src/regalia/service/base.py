"""The service core: construction, authentication, bootstrap and view building.

The service is the only writer. Every public method takes the acting
:class:`Actor` first and checks its rights before touching anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from regalia.blobs.base import BlobStore
from regalia.blobs.factory import open_blob_store
from regalia.blobs.local import LocalBlobStore
from regalia.blobs.s3_direct import DirectUploads, direct_uploads_for
from regalia.config import DEFAULT_OWNER, Settings
from regalia.core.apikeys import hash_key, key_prefix, new_api_key, new_tag, refusal
from regalia.core.names import name_key, validate_entity_name
from regalia.core.roles import OrgRole, Visibility
from regalia.errors import (
    Conflict,
    InvalidRequest,
    OrganizationNotFound,
    Unauthenticated,
    VersionNotFound,
)
from regalia.service.access import effective_roles, may_see
from regalia.service.views import Actor, CollectionView, RegistryView, VersionView
from regalia.store.db import Database
from regalia.store.models import (
    ApiKey,
    Collection,
    Membership,
    Organization,
    Registry,
    User,
)
from regalia.store.repo import Repo

T = TypeVar("T")
V = TypeVar("V", bound="VersionView | None")
Clock = Callable[[], datetime]
CORE_REGISTRIES = (
    ("model", "Models: the core registry for trained models."),
    ("dataset", "Datasets: the core registry for data sets."),
)
__all__ = ["ServiceBase", "as_utc", "hash_key", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything Regalia stores is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ServiceBase:
    """Shared machinery of the service; the use cases live in mixins."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database | None = None,
        blobs: BlobStore | None = None,
        clock: Clock = utcnow,
        migrate: bool = True,
    ) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db = db or Database(
            settings.database_url,
            read_timeout_s=settings.query_timeout_s,
            write_timeout_s=settings.write_timeout_s,
        )
        self.blobs: BlobStore = blobs or (
            open_blob_store(settings.blob_url, tmp_dir=settings.home / "tmp")
            if settings.blob_url
            else LocalBlobStore(settings.blob_dir)
        )
        self.clock = clock
        # Presigned transfers straight to and from the bucket, with an S3 store.
        self.direct: DirectUploads | None = direct_uploads_for(self.blobs)
        # Bumped whenever keys are revoked through this service: whoever remembers
        # authenticated keys (the server) forgets them when it changes.
        self.keys_epoch = 0
        if migrate:
            self.db.migrate()

    def close(self) -> None:
        self.db.dispose()

    def now(self) -> datetime:
        return self.clock()

    # -- organization bootstrap and identities ---------------------------------------
    def ensure_org(self, name: str | None = None, owner: str = DEFAULT_OWNER) -> Actor:
        """Create the organization (with its core registries and owner) if missing;
        return the owner as an actor. Idempotent and safe under concurrency."""
        org_name = validate_entity_name(name or self.settings.org_name, "organization name")
        validate_entity_name(owner, "user name")

        def fn(repo: Repo) -> int:
            org = repo.org_by_name(org_name)
            if org is None:
                now = self.now()
                repo.ensure_store_tag(new_tag(), now)
                org = repo.add(Organization(name=org_name, created_at=now))
                repo.add(
                    User(
                        org_id=org.id,
                        name=owner,
                        name_key=owner.lower(),
                        kind="user",
                        org_role=OrgRole.ADMIN.value,
                        created_at=now,
                    )
                )
                for reg_name, description in CORE_REGISTRIES:
                    repo.add(
                        Registry(
                            org_id=org.id,
                            name=reg_name,
                            name_key=reg_name,
                            description=description,
                            visibility=Visibility.ORGANIZATION.value,
                            artifact_types=None,
                            is_core=True,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            return org.id

        existing = self.db.read(lambda r: r.org_by_name(org_name))
        org_id = existing.id if existing else self.db.write(fn)
        return self.db.read(lambda r: self._owner_actor(r, org_id))

    def _owner_actor(self, repo: Repo, org_id: int) -> Actor:
        org = repo.get(Organization, org_id)
        owner = next((u for u in repo.users(org_id) if u.org_role == "admin"), None)
        if org is None or owner is None:
            raise OrganizationNotFound("the organization has no admin")
        return self._actor(repo, owner, org)

    def _actor(self, repo: Repo, user: User, org: Organization | None = None) -> Actor:
        org = org or repo.get(Organization, user.org_id)
        assert org is not None
        teams = repo.teams_of(user.id)
        return Actor(
            user_id=user.id,
            name=user.name,
            org_id=org.id,
            org_name=org.name,
            org_role=user.org_role,
            kind=user.kind,
            team_ids=tuple(t.id for t in teams),
            team_names=tuple(t.name for t in teams),
        )

    def authenticate(self, api_key: str) -> Actor:
        """The actor an API key belongs to.

        Raises:
            Unauthenticated: the key is refused; ``details.reason`` says why
                (see :mod:`regalia.core.apikeys`).
        """
        key = api_key.strip()

        def fn(repo: Repo) -> Actor:
            user = repo.user_by_key_hash(hash_key(key))
            if user is None:
                raise self._key_refusal(repo, key)
            return self._actor(repo, user)

        return self.db.read(fn)

    def _key_refusal(self, repo: Repo, key: str) -> Unauthenticated:
        """Why ``key`` (of no active key) is refused: revoked, another store's, unknown
        or malformed. Never whose key it was."""
        revoked = repo.key_revoked_at(hash_key(key))
        return refusal(
            key,
            store_tag=repo.store_tag(),
            revoked_at=as_utc(revoked) if revoked is not None else None,
        )

    def keys_changed(self) -> None:
        """Keys were revoked (or roles changed): remembered authentications are stale."""
        self.keys_epoch += 1

    def refresh_actor(self, actor: Actor) -> Actor:
        """Reload an actor's roles and teams (after they changed)."""
        return self.db.read(lambda r: self._actor(r, r.get(User, actor.user_id)))

    def _issue_key(self, repo: Repo, user_id: int) -> str:
        now = self.now()
        key = new_api_key(repo.ensure_store_tag(new_tag(), now))
        repo.add(
            ApiKey(user_id=user_id, key_hash=hash_key(key), prefix=key_prefix(key), created_at=now)
        )
        return key

    def _record(
        self,
        repo: Repo,
        actor: Actor,
        action: str,
        coll: Collection | None,
        *,
        version_index: int | None = None,
        version_id: int | None = None,
        alias: str | None = None,
        registry_id: int | None = None,
        **details: Any,
    ) -> None:
        repo.record(
            org_id=actor.org_id,
            action=action,
            actor_id=actor.user_id,
            actor_name=actor.name,
            registry_id=coll.registry_id if coll is not None else registry_id,
            collection_id=coll.id if coll is not None else None,
            version_id=version_id,
            version_index=version_index,
            alias=alias,
            details=details,
            created_at=self.now(),
        )

    # -- idempotency ------------------------------------------------------------------
    def _once(
        self,
        actor: Actor,
        key: str | None,
        operation: str,
        fn: Callable[[Repo], V],
    ) -> Callable[[Repo], V]:
        """Wrap a write so that a retried request (same ``key`` from the same user)
        returns the first result instead of changing anything again. The key is
        recorded in the change's own transaction: both happen, or neither."""
        if key is None:
            return fn
        if not key or len(key) > 128:
            raise InvalidRequest("an idempotency key has 1 to 128 characters")

        def once(repo: Repo) -> V:
            done = repo.idempotent_result(actor.user_id, key)
            if done is not None:
                op, membership_id = done
                if op != operation:
                    raise Conflict(
                        f"idempotency key {key!r} was already used for a {op} request",
                        operation=op,
                    )
                if membership_id is None:
                    return cast(V, None)
                # The replay shows the version as it is now: only if the caller may
                # still see it (they may have lost their role in its registry since).
                found = repo.membership_context(membership_id)
                if found is None or not may_see(repo, actor, found[2], found[3]):
                    raise VersionNotFound(f"artifact version {membership_id} not found")
                return cast(V, self._version_view(repo, found[0], created=False))
            result = fn(repo)
            mid = result.membership_id if isinstance(result, VersionView) else None
            repo.record_idempotent(actor.user_id, key, operation, mid, self.now())
            return result

        return once

    # -- views ------------------------------------------------------------------------
    def _registry_views(
        self, repo: Repo, actor: Actor, regs: Sequence[Registry]
    ) -> list[RegistryView]:
        roles = effective_roles(repo, actor, regs)
        counts = repo.collection_counts(r.id for r in regs)
        return [
            RegistryView(
                id=r.id,
                name=r.name,
                description=r.description or "",
                visibility=r.visibility,
                artifact_types=list(r.artifact_types) if r.artifact_types else None,
                is_core=r.is_core,
                protected_aliases=repo.protected_aliases(r.id),
                role=role.value if (role := roles[r.id]) is not None else None,
                collection_count=counts.get(r.id, 0),
                created_at=as_utc(r.created_at),
                updated_at=as_utc(r.updated_at),
            )
            for r in regs
        ]

    def _collection_views(self, repo: Repo, colls: Sequence[Collection]) -> list[CollectionView]:
        rows = repo.collection_rows([c.id for c in colls])
        tags = repo.collection_tags(rows)
        return [_collection_view(rows[c.id], tags[c.id]) for c in colls]

    def _version_views(
        self, repo: Repo, memberships: Sequence[Membership], *, created: bool = True
    ) -> list[VersionView]:
        return self._version_views_by_id(repo, [m.id for m in memberships], created=created)

    def _version_views_by_id(
        self, repo: Repo, membership_ids: Sequence[int], *, created: bool = True
    ) -> list[VersionView]:
        if not membership_ids:
            return []
        rows = repo.version_rows(membership_ids)
        extras = repo.version_extras(
            rows,
            (r.vid for r in rows.values()),
            (r.cid for r in rows.values()),
            (r.cregistry_id for r in rows.values() if r.cregistry_id is not None),
        )
        aliases, tags, ctags = extras.aliases, extras.version_tags, extras.collection_tags
        protected = extras.protected
        out = []
        for mid in membership_ids:
            r = rows[mid]
            names = aliases[mid]
            prot = protected.get(r.cregistry_id, set()) if r.cregistry_id is not None else set()
            out.append(
                VersionView(
                    version_id=r.vid,
                    membership_id=r.mid,
                    collection=_collection_view(r, ctags[r.cid]),
                    index=r.mindex,
                    source_entity=r.seq_entity,
                    source_project=r.seq_project,
                    source_name=r.seq_name,
                    source_index=r.vindex,
                    type=r.seq_type,
                    aliases=names,
                    protected_aliases=[a for a in names if name_key(a) in prot],
                    tags=tags[r.vid],
                    description=r.description or "",
                    metadata=dict(r.metadata or {}),
                    digest=r.digest,
                    size=int(r.size),
                    file_count=r.file_count,
                    created_by=r.creator,
                    created_at=as_utc(r.created_at),
                    updated_at=as_utc(r.updated_at),
                    run_key=r.run_key,
                    created=created,
                )
            )
        return out

    def _version_view(
        self, repo: Repo, membership: Membership, *, created: bool = True
    ) -> VersionView:
        return self._version_views(repo, [membership], created=created)[0]


def _collection_view(row: Any, tags: list[str]) -> CollectionView:
    """A collection view from a row of ``store.views`` collection columns."""
    return CollectionView(
        id=row.cid,
        kind=row.ckind,
        name=row.cname,
        type=row.ctype,
        description=row.cdescription or "",
        tags=tags,
        version_count=row.cmembers,
        registry=row.rname,
        entity=row.centity,
        project=row.cproject,
        created_at=as_utc(row.ccreated_at),
        updated_at=as_utc(row.cupdated_at),
    )
