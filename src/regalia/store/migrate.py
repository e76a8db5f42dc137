"""Alembic migrations, run programmatically (no alembic.ini needed).

Several processes may start on a fresh database at once; the upgrade runs
under a lock (a PostgreSQL advisory lock, or a file lock beside the SQLite
file) so that exactly one of them applies each revision.

Starting is quick on the two common cases without importing Alembic (about
half a second here): a database already at :data:`HEAD` is left alone, and an
empty one gets the models' tables and is stamped ``HEAD`` in one transaction
(a test checks that this schema is the one the migrations build).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0011"  # the newest revision in migrations/versions (a test keeps them in step)
_ADVISORY_KEY = 0x7265_6761  # "rega"

_VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def script_head() -> str | None:
    """The head revision as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current(conn: Connection) -> str | None:
    """The revision the database is at; None when it has no version table."""
    if not inspect(conn).has_table(_VERSION_TABLE.name):
        return None
    return conn.execute(_VERSION_TABLE.select()).scalar()


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
    with engine.connect() as conn:
        if _current(conn) == HEAD:
            return
        conn.rollback()
        with _lock(engine, conn):
            if _current(conn) == HEAD:
                return
            empty = not inspect(conn).get_table_names()
            conn.rollback()
            with engine.begin() as mig_conn:
                if empty:
                    _create_at_head(mig_conn)
                else:
                    from alembic import command

                    command.upgrade(alembic_config(mig_conn), "head")


def _create_at_head(conn: Connection) -> None:
    """An empty database: the models' tables, stamped at ``HEAD``."""
    from regalia.store.models import Base

    Base.metadata.create_all(conn)
    _VERSION_TABLE.create(conn)
    conn.execute(_VERSION_TABLE.insert().values(version_num=HEAD))
