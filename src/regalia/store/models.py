"""The metadata schema (SQLAlchemy 2 declarative).

One idea carries most of it: a *collection* is an ordered list of artifact
versions with aliases. A source artifact (``entity/project/name``) is a
collection of kind ``sequence`` whose members are its own versions; a registry
collection is a collection of kind ``portfolio`` whose members are links to
versions of sequences. Indices, ``latest``, aliases and history work the same
for both.

Constraints keep the SPEC's rules true under concurrency:

* ``uq_alias_collection_name``: one alias name per collection, ignoring case (R5);
* ``uq_membership_index``: one index per collection (R2), allocated from the
  per-collection counter ``collections.next_index`` (never ``max + 1``);
* ``uq_membership_version``: a version is linked at most once per collection (R3);
* ``uq_version_digest``: identical content is one version of a source (R10).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


def _id() -> Mapped[int]:
    return mapped_column(ID, primary_key=True, autoincrement=True)


def _ts() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = _ts()


class StoreIdentity(Base):
    """This database's tag (one row, ``id`` 1): six random lowercase letters and
    digits written into every API key it issues (``rg_<tag>_<secret>``), so that
    a key from another server or an earlier store is told apart from a typo."""

    __tablename__ = "store_identity"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tag: Mapped[str] = mapped_column(String(6))
    created_at: Mapped[datetime] = _ts()


class SecretKeyCheck(Base):
    """The fingerprint of a deployment's secret key, one row per organization
    (one deployment serves one; several may share a database), written by the
    first server to start: a node started with another key is refused (see
    :meth:`regalia.service.Service.check_secret_key`)."""

    __tablename__ = "secret_key_check"
    org_id: Mapped[int] = mapped_column(
        ID,
        ForeignKey("organizations.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _ts()


class User(Base):
    """A human user or a service account (``kind='service'``)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("org_id", "name_key", name="uq_user_name"),)
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default="user")
    org_role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _ts()


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _ts()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("org_id", "name_key", name="uq_team_name"),)
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _ts()


class TeamMember(Base):
    __tablename__ = "team_members"
    team_id: Mapped[int] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # 'admin' may add and remove the team's members (so hand out its registry
    # roles); 'member' may not. Org admins manage every team.
    role: Mapped[str] = mapped_column(String(16), default="member", server_default="member")


class Registry(Base):
    __tablename__ = "registries"
    __table_args__ = (UniqueConstraint("org_id", "name_key", name="uq_registry_name"),)
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16))
    artifact_types: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    is_core: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class RegistryMember(Base):
    """A role given in a registry to a user or a team (exactly one of the two)."""

    __tablename__ = "registry_members"
    __table_args__ = (
        UniqueConstraint("registry_id", "user_id", name="uq_registry_member_user"),
        UniqueConstraint("registry_id", "team_id", name="uq_registry_member_team"),
    )
    id: Mapped[int] = _id()
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), nullable=True, index=True
    )
    role: Mapped[str] = mapped_column(String(32))


class ProtectedAliasName(Base):
    __tablename__ = "protected_aliases"
    registry_id: Mapped[int] = mapped_column(
        ForeignKey("registries.id", ondelete="CASCADE"), primary_key=True
    )
    name_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _ts()


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "entity", "name", name="uq_project"),)
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    entity: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = _ts()


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("project_id", "run_key", name="uq_run_project_key"),)
    id: Mapped[int] = _id()
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    run_key: Mapped[str] = mapped_column(String(64))
    job_type: Mapped[str | None] = mapped_column(String(128), nullable=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = _ts()
    # What the `wandb` client sends about the run (issue 14); a run of
    # Regalia's own SDK leaves them empty (state null).
    display_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    group_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of strings
    config: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON object
    state: Mapped[str | None] = mapped_column(String(16), nullable=True)  # running|finished|crashed
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tail: Mapped[str | None] = mapped_column(Text, nullable=True)  # the last lines, bounded
    output_lines: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    history_lines: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    events_lines: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RunFile(Base):
    """A file a run uploaded (``config.yaml``, ``output.log``, …): its bytes are
    a blob of the store, by SHA-256; uploading a name again replaces it."""

    __tablename__ = "run_files"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_run_file_name"),)
    id: Mapped[int] = _id()
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class Collection(Base):
    """A sequence (source artifact, in a project) or a portfolio (in a registry)."""

    __tablename__ = "collections"
    __table_args__ = (
        UniqueConstraint("registry_id", "name_key", name="uq_collection_registry_name"),
        UniqueConstraint("project_id", "name_key", name="uq_collection_project_name"),
    )
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    kind: Mapped[str] = mapped_column(String(16))  # 'sequence' | 'portfolio'
    registry_id: Mapped[int | None] = mapped_column(
        ForeignKey("registries.id", ondelete="CASCADE"), nullable=True
    )
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    next_index: Mapped[int] = mapped_column(Integer, default=0)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class CollectionTag(Base):
    __tablename__ = "collection_tags"
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)


class Version(Base):
    """An immutable set of files of one source artifact (its sequence collection)."""

    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("sequence_id", "version_index", name="uq_version_index"),
        UniqueConstraint("sequence_id", "digest", name="uq_version_digest"),
    )
    id: Mapped[int] = _id()
    sequence_id: Mapped[int] = mapped_column(ForeignKey("collections.id"))
    version_index: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(Text, default="")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class VersionTag(Base):
    __tablename__ = "version_tags"
    __table_args__ = (Index("ix_version_tag_lower", func.lower(text("tag"))),)  # search (§6)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(128), primary_key=True)


class VersionFile(Base):
    __tablename__ = "version_files"
    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # A second, faster digest of the same bytes ("blake3:<hex>"), computed at upload,
    # that downloads verify in parallel with the copy.
    check: Mapped[str | None] = mapped_column(String(80), nullable=True)


class Blob(Base):
    """A stored file content, once per organization."""

    __tablename__ = "blobs"
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _ts()


class BlobCheck(Base):
    """The BLAKE3 check of a stored content, recorded when a server received it, so
    that a client's claimed check can be verified without re-reading the blob."""

    __tablename__ = "blob_checks"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    check: Mapped[str] = mapped_column(String(80))


class BlobGrant(Base):
    """Proof of possession: the user sent these bytes to the server (which hashed
    them), so a version of theirs may reference the content (SPEC §7). Content
    stored by someone else is never referenced on the strength of its digest."""

    __tablename__ = "blob_grants"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    granted_at: Mapped[datetime] = _ts()


class BlobClaim(Base):
    """The last time someone was about to reference a content (garbage collection's
    lock and clock, one row per digest as the store keys them): an upload claims
    it before its bytes go into the store, a "stored already, send nothing"
    answer before it is given, and a version's commit locks it while it checks
    the store. Garbage collection frees only contents claimed before its grace
    period, holding this row's lock (see :mod:`regalia.service.gc`)."""

    __tablename__ = "blob_claims"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    claimed_at: Mapped[datetime] = _ts()


class WebSession(Base):
    """A web UI login. The cookie carries a random token; only its SHA-256 is
    stored, so logging out (deleting the row) ends the session everywhere, and
    revoking the API key it was opened with ends it too."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = _ts()
    expires_at: Mapped[datetime] = _ts()


class IdempotencyKey(Base):
    """A request a client may retry: the key it sent and the version it produced,
    stored in the same transaction as the change (a retry returns that version)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),)
    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    operation: Mapped[str] = mapped_column(String(32))
    membership_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[datetime] = _ts()


class Membership(Base):
    """A version's place in a collection: its index ``vN`` there."""

    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("collection_id", "version_index", name="uq_membership_index"),
        UniqueConstraint("collection_id", "version_id", name="uq_membership_version"),
        Index("ix_membership_version", "version_id"),
    )
    id: Mapped[int] = _id()
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    version_index: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = _ts()


class Alias(Base):
    """An alias name on one membership of a collection (``latest`` included)."""

    __tablename__ = "aliases"
    __table_args__ = (
        UniqueConstraint("collection_id", "name_key", name="uq_alias_collection_name"),
        Index("ix_alias_membership", "membership_id"),
        Index("ix_alias_name_key", "name_key"),  # search by alias prefix (§6)
    )
    id: Mapped[int] = _id()
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    membership_id: Mapped[int] = mapped_column(ForeignKey("memberships.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = _ts()


class RunInput(Base):
    """Lineage: a run used a version."""

    __tablename__ = "run_inputs"
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )


class HistoryEvent(Base):
    """R11: every change, with actor and time."""

    __tablename__ = "history"
    __table_args__ = (
        Index("ix_history_collection", "collection_id", "id"),
        Index("ix_history_alias", "collection_id", "alias_key", "created_at"),
        Index("ix_history_registry", "registry_id", "id"),
    )
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    action: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    actor_name: Mapped[str] = mapped_column(String(128))
    registry_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    collection_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    version_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    version_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    alias: Mapped[str | None] = mapped_column(String(128), nullable=True)
    alias_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = _ts()


class Automation(Base):
    """SPEC §5: on an event in a registry (``collection_id`` None: every collection,
    later ones included) or in one collection, when the filter matches, act.
    Target URL, access token and secrets are stored encrypted (``*_enc``)."""

    __tablename__ = "automations"
    __table_args__ = (
        UniqueConstraint("registry_id", "name_key", name="uq_automation_name"),
        Index("ix_automation_scope", "registry_id", "event", "enabled"),
    )
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    registry_id: Mapped[int] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    collection_id: Mapped[int | None] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    event: Mapped[str] = mapped_column(String(32))
    filter_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    filter_value: Mapped[str | None] = mapped_column(String(256), nullable=True)
    action: Mapped[str] = mapped_column(String(16))  # slack | webhook
    target_enc: Mapped[str] = mapped_column(Text)
    target_hint: Mapped[str] = mapped_column(String(256))  # scheme://host/… for display
    token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    signing_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    secrets_enc: Mapped[str | None] = mapped_column(Text, nullable=True)  # {NAME: value}
    secret_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    payload_template: Mapped[str | None] = mapped_column(Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = _ts()


class Delivery(Base):
    """One event to send for one automation (the outbox row), written in the same
    transaction as the change. ``public_id`` is sent with every try: receivers
    deduplicate on it. A worker holds it while ``lease_until`` is ahead."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        Index("ix_delivery_automation", "automation_id", "id"),
    )
    id: Mapped[int] = _id()
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    automation_id: Mapped[int] = mapped_column(ForeignKey("automations.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)  # the event, for the payload
    payload: Mapped[str] = mapped_column(Text)  # as rendered, secrets masked
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = _ts()
    lease_owner: Mapped[str | None] = mapped_column(String(40), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _ts()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DeliveryAttempt(Base):
    """One try of a delivery: when, how long, the response code and an excerpt
    of the response or the error."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_attempt_delivery", "delivery_id", "attempt"),)
    id: Mapped[int] = _id()
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = _ts()
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    excerpt: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(String(40))


class AutomationTarget(Base):
    """Per-target pacing shared by every worker: the next time a message may go to
    this URL (Slack allows about one message per second per channel)."""

    __tablename__ = "automation_targets"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the URL
    next_send_at: Mapped[datetime] = _ts()


class BlobMd5(Base):
    """W&B's digest of a stored content (its MD5), beside Regalia's SHA-256: the
    `wandb` client names contents by MD5 (its manifests hold base64 MD5s), so
    a content either client sent is found, deduplicated and verified by both."""

    __tablename__ = "blob_md5s"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    md5: Mapped[str] = mapped_column(String(32), index=True)  # hex


class WandbDraft(Base):
    """An artifact version the `wandb` client is logging (``createArtifact``):
    its uploads and manifest arrive, then ``commitArtifact`` logs it through the
    service like any other version (``version_id`` says which). Only its
    creator sees it; ``digest`` is W&B's artifact digest (hex MD5 over the
    manifest's ``path:md5`` lines), which the client deduplicates on."""

    __tablename__ = "wandb_drafts"
    __table_args__ = (Index("ix_wandb_draft_digest", "org_id", "name_key", "digest"),)
    id: Mapped[int] = _id()
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    entity: Mapped[str] = mapped_column(String(128))
    project: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    name_key: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    run_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # path -> [hex md5, size], from the manifest the client PUT (None until then)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = _ts()


class WandbDraftFile(Base):
    """A file of a draft whose content is known: the bytes its upload URL
    received, or a stored content the creator may reference (no upload)."""

    __tablename__ = "wandb_draft_files"
    draft_id: Mapped[int] = mapped_column(
        ForeignKey("wandb_drafts.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    md5: Mapped[str] = mapped_column(String(32))  # hex
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


class DirectUpload(Base):
    """A resumable upload a client sends straight to the bucket (S3 store):
    the bucket holds its parts under a staging key named by ``id``;
    ``store_upload_id`` is the bucket's id of the multipart upload, or
    ``"whole-put"`` for one PUT to the content key (``part_size`` is then the
    content's size; see :mod:`regalia.service.direct`). One per
    user and content (SPEC §7: an upload belongs to its user), so any node
    resumes it; ``touched_at`` moves with every part, and the sweep abandons
    uploads left untouched."""

    __tablename__ = "direct_uploads"
    __table_args__ = (UniqueConstraint("user_id", "digest", name="uq_direct_upload_user_digest"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    part_size: Mapped[int] = mapped_column(BigInteger)
    store_upload_id: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = _ts()
    touched_at: Mapped[datetime] = _ts()


class DirectUploadPart(Base):
    """A part whose URL was handed out: the SHA-256 it was signed with (the
    bucket accepts no other bytes for it), used to join the parts."""

    __tablename__ = "direct_upload_parts"
    upload_id: Mapped[str] = mapped_column(
        ForeignKey("direct_uploads.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0-based, as on the wire
    sha256: Mapped[str] = mapped_column(String(64))


# -- full-text search of version descriptions (SPEC §6) ----------------------------------------
# Not in the metadata (SQLAlchemy has no words for an FTS5 table or a GIN index on an
# expression): created with the versions table, and by migration 0005.
FULLTEXT_OBJECTS = frozenset(
    {"version_fts", "version_fts_data", "version_fts_idx", "version_fts_docsize",
     "version_fts_config", "ix_version_description_fts"}
)  # fmt: skip
SQLITE_FULLTEXT = (
    "CREATE VIRTUAL TABLE version_fts USING fts5("
    "description, content='versions', content_rowid='id', tokenize='unicode61')",
    "CREATE TRIGGER version_fts_insert AFTER INSERT ON versions BEGIN "
    "INSERT INTO version_fts(rowid, description) VALUES (new.id, new.description); END",
    "CREATE TRIGGER version_fts_delete AFTER DELETE ON versions BEGIN "
    "INSERT INTO version_fts(version_fts, rowid, description) "
    "VALUES ('delete', old.id, old.description); END",
    "CREATE TRIGGER version_fts_update AFTER UPDATE OF description ON versions BEGIN "
    "INSERT INTO version_fts(version_fts, rowid, description) "
    "VALUES ('delete', old.id, old.description); "
    "INSERT INTO version_fts(rowid, description) VALUES (new.id, new.description); END",
)
POSTGRES_FULLTEXT = (
    "CREATE INDEX ix_version_description_fts ON versions "
    "USING gin (to_tsvector('simple', description))",
)


@event.listens_for(Version.__table__, "after_create")
def _create_fulltext(target: Any, connection: Any, **kw: Any) -> None:
    statements = SQLITE_FULLTEXT if connection.dialect.name == "sqlite" else POSTGRES_FULLTEXT
    for statement in statements:
        connection.exec_driver_sql(statement)
