"""Alembic migrations, run programmatically (no alembic.ini needed).

Several processes may start on a fresh database at once; the upgrade runs
under a lock (a PostgreSQL advisory lock, or a file lock beside the SQLite
file) so that exactly one of them applies each revision.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_KEY = 0x7265_6761  # "rega"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _lock(engine: Engine, conn: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
            conn.commit()
        return
    db_path = engine.url.database
    if not db_path or db_path == ":memory:":
        yield
        return
    with open(f"{db_path}.migrate-lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to the head revision."""
    head = _head()
    with engine.connect() as conn:
        if _current(conn) == head:
            return
        conn.rollback()
        with _lock(engine, conn):
            if _current(conn) == head:
                return
            conn.rollback()
            with engine.begin() as mig_conn:
                command.upgrade(alembic_config(mig_conn), "head")
