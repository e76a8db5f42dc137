"""trust (issue 12): proof-of-possession grants, server-side web sessions, team admins

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blob_grants",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "digest"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_web_sessions_api_key_id", "web_sessions", ["api_key_id"], unique=False)
    with op.batch_alter_table("team_members") as batch:
        batch.add_column(
            sa.Column("role", sa.String(length=16), server_default="member", nullable=False)
        )
    # Data written under the old rules: name keys become NFKC + case folded,
    # NaN/Infinity kept in SQLite's JSON become null (see regalia.store.legacy).
    from regalia.store.legacy import rekey_names, repair_json

    rekey_names(op.get_bind())
    repair_json(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("team_members") as batch:
        batch.drop_column("role")
    op.drop_index("ix_web_sessions_api_key_id", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("blob_grants")
