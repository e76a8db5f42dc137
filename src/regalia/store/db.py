"""Database engines, transactions and migrations.

SQLite (the embedded default) runs in WAL mode; every write transaction starts
with ``BEGIN IMMEDIATE`` so that two writers never deadlock on a lock upgrade,
and waits (busy timeout) instead of failing. PostgreSQL writers serialize per
collection with row locks taken by the repository. Transient failures
(``database is locked``, serialization failures, deadlocks, a lost race on a
unique key) retry the whole unit of work; no driver exception leaves this layer.

Time budgets (:mod:`regalia.core.limits`): every read transaction's statements
may run ``read_timeout_s`` (``REGALIA_QUERY_TIMEOUT``), every write's
``write_timeout_s`` (``REGALIA_WRITE_TIMEOUT``); 0 means no limit. PostgreSQL
enforces them with ``statement_timeout`` (set once per pooled connection; the
server cancels the statement), SQLite with a progress handler installed at the
start of each transaction that interrupts the statement once the deadline has
passed (the budget there covers the whole transaction). A read past its budget
is :class:`~regalia.errors.QueryTooExpensive`, a write past it
:class:`~regalia.errors.StorageUnavailable` saying so; neither is retried.
Migrations run without a budget.

SQLite's ``REGEXP`` is RE2 (:mod:`regalia.core.patterns`), not Python's
backtracking ``re``: SQLAlchemy's ``regexp_match`` and filters' ``$regex`` use it.
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

from regalia.core import patterns
from regalia.core.limits import QUERY_TIMEOUT_S, WRITE_TIMEOUT_S
from regalia.errors import InvalidRequest, QueryTooExpensive, RegaliaError, StorageUnavailable
from regalia.store.repo import Repo

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 60.0
MAX_ATTEMPTS = 12
# SQLite virtual-machine steps between two looks at the clock (a few µs of work).
PROGRESS_STEPS = 1000
_BUDGET = "regalia_budget_s"  # execution option: seconds a transaction may run
_PG_QUERY_CANCELED = "57014"


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'regalia.db'}"


def make_engine(
    url: str, *, snapshot_reads: bool = False, statement_timeout_s: float = 0
) -> Engine:
    """Create an engine for ``url`` with Regalia's connection settings. On
    PostgreSQL, ``snapshot_reads`` makes a pool of read-only REPEATABLE READ
    connections (set once per connection, not on every checkout), and
    ``statement_timeout_s`` (0: none) is each connection's ``statement_timeout``.
    On SQLite, budgets are per transaction (the ``regalia_budget_s`` execution
    option, see :class:`Database`)."""
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
            if statement_timeout_s:
                _set_statement_timeout(engine, statement_timeout_s)
    except (sa_exc.ArgumentError, ImportError) as exc:
        raise StorageUnavailable(f"cannot use database URL {url!r}: {exc}") from None
    return engine


def _json_text(value: Any) -> str:
    """JSON columns hold JSON: no NaN or Infinity (Python's default writes them)."""
    return json.dumps(value, allow_nan=False)


def _set_statement_timeout(engine: Engine, seconds: float) -> None:
    milliseconds = max(1, round(seconds * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Once per pooled connection, so a checkout costs nothing; the server
        # cancels a statement that runs longer (SQLSTATE 57014).
        with dbapi_conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {milliseconds}")
        dbapi_conn.commit()


class _Deadline:
    """The time budget of the transaction running on one SQLite connection.

    ``check`` is the connection's progress handler (SQLite calls it every
    :data:`PROGRESS_STEPS` steps): a true answer makes SQLite interrupt the
    running statement ("interrupted"). ``regexp`` is its REGEXP function, RE2;
    once the deadline has passed it interrupts the statement itself, since a
    query over few long texts may take few steps between two slow matches.
    """

    __slots__ = ("at", "_conn")

    def __init__(self, dbapi_conn: sqlite3.Connection) -> None:
        self.at: float | None = None
        # A cycle (the connection holds regexp, which holds us): the pool closes
        # connections, and the garbage collector follows sqlite3's callbacks.
        self._conn = dbapi_conn

    def check(self) -> bool:
        return self.at is not None and time.monotonic() > self.at

    def regexp(self, pattern: str | None, value: object) -> bool | None:
        if pattern is None or value is None:
            return None
        if self.check():
            self._conn.interrupt()  # the statement fails "interrupted" at its next step
            return False
        return patterns.search(pattern, value if isinstance(value, str) else str(value))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cur.close()
        deadline = _Deadline(dbapi_conn)
        record.info["regalia_deadline"] = deadline
        # Replaces SQLAlchemy's REGEXP (Python's re, which can backtrack for ever).
        dbapi_conn.create_function("regexp", 2, deadline.regexp, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        statement = "BEGIN IMMEDIATE" if options.get("regalia_write", False) else "BEGIN"
        fairy = conn.connection
        dbapi_conn = fairy.dbapi_connection
        deadline: _Deadline = fairy.info["regalia_deadline"]
        budget = options.get(_BUDGET) or 0
        # Set for every transaction, so none inherits an earlier one's deadline.
        deadline.at = time.monotonic() + budget if budget else None
        dbapi_conn.set_progress_handler(deadline.check if budget else None, PROGRESS_STEPS)
        try:  # straight to the driver: this runs for every transaction
            dbapi_conn.execute(statement)
        except sqlite3.Error as exc:  # wrapped so that it is retried or translated
            raise sa_exc.OperationalError(statement, None, exc) from None


def _timed_out(exc: BaseException) -> bool:
    """The statement was stopped by its time budget (see the module docstring)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == _PG_QUERY_CANCELED:
        return "statement timeout" in str(orig)  # not an administrator's pg_cancel_backend
    return isinstance(orig, sqlite3.OperationalError) and str(orig) == "interrupted"


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
    """An engine plus unit-of-work helpers that retry transient failures.

    Args:
        url: a SQLAlchemy URL (SQLite or PostgreSQL).
        read_timeout_s: the time budget of each read (0: none).
        write_timeout_s: the time budget of each write (0: none).
    """

    def __init__(
        self,
        url: str,
        *,
        read_timeout_s: float = QUERY_TIMEOUT_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.read_timeout_s = read_timeout_s
        self.write_timeout_s = write_timeout_s
        self.engine = make_engine(url, statement_timeout_s=write_timeout_s)
        self.dialect = self.engine.dialect.name
        budgets: dict[str, float] = {_BUDGET: write_timeout_s}
        self._write_engine = self.engine.execution_options(regalia_write=True, **budgets)
        # Reads see one snapshot (an alias and its version's alias list agree);
        # writes stay READ COMMITTED and serialize on row locks.
        self._read_engine = (
            make_engine(url, snapshot_reads=True, statement_timeout_s=read_timeout_s)
            if self.dialect == "postgresql"
            else self.engine.execution_options(**{_BUDGET: read_timeout_s})
        )
        # Called after a commit that queued automation deliveries (a worker's wake-up).
        self.on_deliveries: list[Callable[[], None]] = []

    def dispose(self) -> None:
        self.engine.dispose()
        self._read_engine.dispose()  # the same pool as engine's on SQLite: disposing twice is fine

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
                if _timed_out(exc):  # never retried: it would run as long again
                    raise self._over_budget(write) from None
                refused = _refused_value(exc)
                if refused is not None:
                    raise refused from None
                if attempt < MAX_ATTEMPTS and _is_transient(exc):
                    time.sleep(min(0.5, 0.005 * 2**attempt) * random.random())
                    continue
                log.exception("database error")
                raise _translate(exc) from None

    def _over_budget(self, write: bool) -> RegaliaError:
        if write:
            return StorageUnavailable(
                f"the change took longer than {self.write_timeout_s:g} s "
                "(REGALIA_WRITE_TIMEOUT) and was stopped; nothing of it was written",
                limit="write_timeout",
                timeout_s=self.write_timeout_s,
            )
        return QueryTooExpensive(
            f"the query took longer than {self.read_timeout_s:g} s (REGALIA_QUERY_TIMEOUT) "
            "and was stopped: narrow it",
            limit="query_timeout",
            timeout_s=self.read_timeout_s,
        )

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

        # PostgreSQL: an engine of its own, without the writes' statement_timeout
        # (an index build on a big table may take longer). SQLite's budgets are
        # execution options that the plain engine does not carry.
        engine = make_engine(self.url) if self.dialect == "postgresql" else self.engine
        try:
            upgrade(engine)
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc) from None
        finally:
            if engine is not self.engine:
                engine.dispose()


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
