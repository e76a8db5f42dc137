"""The migrations build exactly the schema the models declare, on both databases,
and upgrade a database created by the first release. A fresh database, created
from the models without Alembic for a quick first start, gets that same schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import PG_ADMIN_URL
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from regalia.store.db import Database
from regalia.store.migrate import HEAD, alembic_config, script_head
from regalia.store.models import FULLTEXT_OBJECTS, Base

# SQLite's reflection skips expression indexes (the search's lower(tag)); PostgreSQL compares them.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index"),
    pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based"),
]


@contextmanager
def scratch_database(db_kind: str, tmp_path: Path) -> Iterator[Database]:
    """An empty database of its own (a new PostgreSQL database, or a new SQLite file)."""
    if db_kind == "sqlite":
        db = Database(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}")
        try:
            yield db
        finally:
            db.dispose()
        return
    name = f"regalia_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    db = Database(f"{base}/{name}")
    try:
        yield db
    finally:
        db.dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def schema(engine: Engine) -> dict[str, Any]:
    """Everything the inspector sees of each table, in a comparable form."""
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(table)
            ),
            "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in insp.get_foreign_keys(table)
            ),
        }
    return out


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_the_head_constant_is_the_newest_migration():
    assert script_head() == HEAD


def test_migrated_schema_matches_the_models(db_kind, tmp_path):
    with scratch_database(db_kind, tmp_path) as db:
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": lambda obj, name, *_: name not in FULLTEXT_OBJECTS}
            )
            diff = compare_metadata(context, Base.metadata)
        assert diff == []


def test_a_fresh_database_gets_the_migrated_schema_without_alembic(db_kind, tmp_path):
    with (
        scratch_database(db_kind, tmp_path) as migrated,
        scratch_database(db_kind, tmp_path) as fresh,
    ):
        with migrated.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        fresh.migrate()  # empty: created from the models and stamped
        assert revision(fresh.engine) == HEAD == revision(migrated.engine)
        assert schema(fresh.engine) == schema(migrated.engine)
        fresh.migrate()  # at head: nothing to do
        with fresh.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")  # Alembic agrees
        assert schema(fresh.engine) == schema(migrated.engine)


def test_run_keys_are_unique_per_project_after_upgrading_from_0001(db_kind, tmp_path):
    with scratch_database(db_kind, tmp_path) as db:
        with db.engine.begin() as conn:
            cfg = alembic_config(conn)
            command.upgrade(cfg, "0001")
            command.upgrade(cfg, "head")
        uniques = inspect(db.engine).get_unique_constraints("runs")
        assert [sorted(u["column_names"]) for u in uniques] == [["project_id", "run_key"]]
        db.migrate()  # already at head
        assert revision(db.engine) == HEAD
