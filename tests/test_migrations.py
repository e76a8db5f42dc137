"""The migrations build exactly the schema the models declare, on both databases,
and upgrade a database created by the first release."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from regalia.store.db import Database
from regalia.store.migrate import alembic_config
from regalia.store.models import Base


def test_migrated_schema_matches_the_models(settings):
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        db.dispose()


def test_run_keys_are_unique_per_project_after_upgrading_from_0001(settings):
    settings.home.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    try:
        with db.engine.begin() as conn:
            cfg = alembic_config(conn)
            command.upgrade(cfg, "0001")
            command.upgrade(cfg, "head")
        uniques = inspect(db.engine).get_unique_constraints("runs")
        assert [sorted(u["column_names"]) for u in uniques] == [["project_id", "run_key"]]
    finally:
        db.dispose()
