"""the store's tag, written into the API keys it issues (issue 13)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_identity",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tag", sa.String(length=6), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # An existing store gets its tag now; its older keys (rg_<40 chars>) keep working.
    alphabet = string.ascii_lowercase + string.digits
    tag = "".join(secrets.choice(alphabet) for _ in range(6))
    op.bulk_insert(table, [{"id": 1, "tag": tag, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("store_identity")
