"""automations, their deliveries (the outbox), delivery attempts, target pacing (issue 4)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "automation_targets",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "automations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("registry_id", ID, nullable=False),
        sa.Column("collection_id", ID, nullable=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("name_key", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("filter_kind", sa.String(length=16), nullable=True),
        sa.Column("filter_value", sa.String(length=256), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("target_enc", sa.Text(), nullable=False),
        sa.Column("target_hint", sa.String(length=256), nullable=False),
        sa.Column("token_enc", sa.Text(), nullable=True),
        sa.Column("signing_secret_enc", sa.Text(), nullable=True),
        sa.Column("secrets_enc", sa.Text(), nullable=True),
        sa.Column("secret_names", sa.JSON(), nullable=False),
        sa.Column("payload_template", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["registry_id"], ["registries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("registry_id", "name_key", name="uq_automation_name"),
    )
    op.create_index(
        "ix_automation_scope", "automations", ["registry_id", "event", "enabled"], unique=False
    )
    op.create_table(
        "deliveries",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("automation_id", ID, nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("is_test", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=40), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["automation_id"], ["automations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("public_id"),
    )
    op.create_index("ix_delivery_automation", "deliveries", ["automation_id", "id"], unique=False)
    op.create_index("ix_delivery_due", "deliveries", ["status", "next_attempt_at"], unique=False)
    op.create_table(
        "delivery_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("delivery_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.Column("worker", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_attempt_delivery", "delivery_attempts", ["delivery_id", "attempt"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_attempt_delivery", table_name="delivery_attempts")
    op.drop_table("delivery_attempts")
    op.drop_index("ix_delivery_due", table_name="deliveries")
    op.drop_index("ix_delivery_automation", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_automation_scope", table_name="automations")
    op.drop_table("automations")
    op.drop_table("automation_targets")
