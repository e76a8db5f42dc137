"""Database engines, transactions and migrations.

SQLite (the embedded default) runs in WAL mode; every write transaction starts
with ``BEGIN IMMEDIATE`` so that two writers never deadlock on a lock upgrade,
and waits (busy timeout) instead of failing. PostgreSQL writers serialize per
collection with row locks taken by the repository. Transient failures
(``database is locked``, serialization failures, deadlocks, a lost race on a
unique key) retry the whole unit of work; no driver exception leaves this layer.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from regalia.errors import InvalidRequest, RegaliaError, StorageUnavailable
from regalia.store.repo import Repo

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 12


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'regalia.db'}"


def make_engine(url: str, *, snapshot_reads: bool = False) -> Engine:
    """Create an engine for ``url`` with Regalia's connection settings. On
    PostgreSQL, ``snapshot_reads`` makes a pool of read-only REPEATABLE READ
    connections (set once per connection, not on every checkout)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        if url.startswith("sqlite"):
            engine = create_engine(
                url,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                json_serializer=_json_text,
            )
            _configure_sqlite(engine)
        else:
            # No pre-ping (a round trip per checkout): a connection the server
            # dropped fails its unit of work, which is retried (see _is_transient).
            options: dict[str, Any] = (
                {
                    "isolation_level": "REPEATABLE READ",
                    "execution_options": {"postgresql_readonly": True},
                }
                if snapshot_reads
                else {}
            )
            engine = create_engine(
                url, pool_size=5, max_overflow=10, json_serializer=_json_text, **options
            )
    except (sa_exc.ArgumentError, ImportError) as exc:
        raise StorageUnavailable(f"cannot use database URL {url!r}: {exc}") from None
    return engine


def _json_text(value: Any) -> str:
    """JSON columns hold JSON: no NaN or Infinity (Python's default writes them)."""
    return json.dumps(value, allow_nan=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("regalia_write", False)
        statement = "BEGIN IMMEDIATE" if write else "BEGIN"
        try:  # straight to the driver: this runs for every transaction
            conn.connection.dbapi_connection.execute(statement)
        except sqlite3.Error as exc:  # wrapped so that it is retried or translated
            raise sa_exc.OperationalError(statement, None, exc) from None


def _is_transient(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    if isinstance(exc, sa_exc.IntegrityError):
        return True  # a lost race on a unique key: the retry sees the winner's row
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True  # the database server dropped the connection (no pre-ping)
    return isinstance(exc, sa_exc.OperationalError | sa_exc.DBAPIError) and any(
        s in text
        for s in (
            "database is locked",
            "database table is locked",
            "could not serialize",
            "deadlock detected",
            "busy",
        )
    )


class Database:
    """An engine plus unit-of-work helpers that retry transient failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._write_engine = self.engine.execution_options(regalia_write=True)
        # Reads see one snapshot (an alias and its version's alias list agree);
        # writes stay READ COMMITTED and serialize on row locks.
        self._read_engine = (
            make_engine(url, snapshot_reads=True)
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )
        self.dialect = self.engine.dialect.name
        # Called after a commit that queued automation deliveries (a worker's wake-up).
        self.on_deliveries: list[Callable[[], None]] = []

    def dispose(self) -> None:
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()

    @contextmanager
    def _session(self, write: bool) -> Iterator[Session]:
        session = Session(
            bind=self._write_engine if write else self._read_engine, expire_on_commit=False
        )
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def run(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction; retry the whole of it on transient failures."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._session(write) as session:
                    return fn(session)
            except RegaliaError:
                raise
            except OverflowError:  # SQLite binds 64-bit integers only
                raise _out_of_range() from None
            except sa_exc.SQLAlchemyError as exc:
                refused = _refused_value(exc)
                if refused is not None:
                    raise refused from None
                if attempt < MAX_ATTEMPTS and _is_transient(exc):
                    time.sleep(min(0.5, 0.005 * 2**attempt) * random.random())
                    continue
                log.exception("database error")
                raise _translate(exc) from None

    def read(self, fn: Callable[[Repo], T]) -> T:
        """Run ``fn`` with a repository in a read transaction."""
        return self.run(lambda s: fn(Repo(s)), write=False)

    def write(self, fn: Callable[[Repo], T]) -> T:
        """Run ``fn`` with a repository in a write transaction (retried if transient)."""

        queued = 0

        def unit(session: Session) -> T:
            nonlocal queued
            repo = Repo(session)
            result = fn(repo)
            queued = repo.finish()
            return result

        result = self.run(unit, write=True)
        if queued:
            for wake in self.on_deliveries:
                wake()
        return result

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from regalia.store.migrate import upgrade

        try:
            upgrade(self.engine)
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc) from None


def _out_of_range() -> InvalidRequest:
    return InvalidRequest("a number in the request is outside the range the database can store")


def _refused_value(exc: sa_exc.SQLAlchemyError) -> InvalidRequest | None:
    """A value in the request the database cannot hold (a number past its integers,
    text with U+0000): the client's error, not a failing database. The service
    refuses these first; this keeps any it missed from answering 500 or 503."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    if state == "22003" or isinstance(orig, OverflowError):  # numeric_value_out_of_range
        return _out_of_range()
    if isinstance(orig, ValueError) and "JSON compliant" in str(orig):
        return InvalidRequest("a value in the request is not JSON: JSON has no NaN or Infinity")
    if state == "22001":  # string_data_right_truncation
        return InvalidRequest("a text in the request is longer than the database can store")
    if state in ("22021", "22P05") or "NUL (0x00)" in str(orig):
        return InvalidRequest("text in the request holds a character the database cannot store")
    return None


def _translate(exc: sa_exc.SQLAlchemyError) -> RegaliaError:
    orig = getattr(exc, "orig", exc)
    return StorageUnavailable(
        f"the metadata database failed: {type(orig).__name__}: {str(orig).splitlines()[0][:300]}"
    )
