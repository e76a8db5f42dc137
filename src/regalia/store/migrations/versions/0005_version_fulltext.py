"""full-text search of version descriptions: FTS5 on SQLite, a GIN index on PostgreSQL (issue 5)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SQLITE = (
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
    "INSERT INTO version_fts(version_fts) VALUES ('rebuild')",  # the versions already there
)
POSTGRES = (
    "CREATE INDEX ix_version_description_fts ON versions "
    "USING gin (to_tsvector('simple', description))",
)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE if sqlite else POSTGRES:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("version_fts_insert", "version_fts_delete", "version_fts_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS version_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_version_description_fts")
