"""indexes of the global search: aliases by name, version tags by lower-case tag (issue 5)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alias_name_key", "aliases", ["name_key"])
    op.create_index("ix_version_tag_lower", "version_tags", [sa.func.lower(sa.text("tag"))])


def downgrade() -> None:
    op.drop_index("ix_version_tag_lower", table_name="version_tags")
    op.drop_index("ix_alias_name_key", table_name="aliases")
