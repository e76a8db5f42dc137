"""blob checks, idempotency keys, run keys unique per project (the server, issue 3)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blob_checks",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("check", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("membership_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),
    )


    # Run keys were unique across every organization: one org's key could block
    # (or be referenced by) another's. They are unique per project now.
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "runs",
            recreate="always",
            naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"},
        ) as batch:
            batch.drop_constraint("uq_runs_run_key", type_="unique")
            batch.create_unique_constraint("uq_run_project_key", ["project_id", "run_key"])
    else:
        op.drop_constraint("runs_run_key_key", "runs", type_="unique")
        op.create_unique_constraint("uq_run_project_key", "runs", ["project_id", "run_key"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("runs", recreate="always") as batch:
            batch.drop_constraint("uq_run_project_key", type_="unique")
            batch.create_unique_constraint("runs_run_key_key", ["run_key"])
    else:
        op.drop_constraint("uq_run_project_key", "runs", type_="unique")
        op.create_unique_constraint("runs_run_key_key", "runs", ["run_key"])
    op.drop_table("idempotency_keys")
    op.drop_table("blob_checks")
