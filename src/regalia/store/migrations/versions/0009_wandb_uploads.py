"""MD5 beside SHA-256, and the wandb client's pending artifacts (issue 14)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blob_md5s",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_blob_md5s_md5", "blob_md5s", ["md5"])
    op.create_table(
        "wandb_drafts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("org_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("entity", sa.String(length=128), nullable=False),
        sa.Column("project", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("name_key", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=True),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("version_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["version_id"], ["versions.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_wandb_draft_digest", "wandb_drafts", ["org_id", "name_key", "digest"])
    op.create_index("ix_wandb_drafts_user_id", "wandb_drafts", ["user_id"])
    op.create_index("ix_wandb_drafts_version_id", "wandb_drafts", ["version_id"])
    op.create_table(
        "wandb_draft_files",
        sa.Column("draft_id", ID, nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["draft_id"], ["wandb_drafts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("draft_id", "path"),
    )


def downgrade() -> None:
    op.drop_table("wandb_draft_files")
    op.drop_index("ix_wandb_drafts_version_id", table_name="wandb_drafts")
    op.drop_index("ix_wandb_drafts_user_id", table_name="wandb_drafts")
    op.drop_index("ix_wandb_draft_digest", table_name="wandb_drafts")
    op.drop_table("wandb_drafts")
    op.drop_index("ix_blob_md5s_md5", table_name="blob_md5s")
    op.drop_table("blob_md5s")
