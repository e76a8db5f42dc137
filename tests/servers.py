"""Real Regalia servers on 127.0.0.1 for tests: one in a thread of the test
process (quick, for the SDK suite) or a ``regalia server`` process, and
:class:`Nodes`: several server processes of one deployment (issue 15)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import uvicorn

from regalia.config import Settings
from regalia.server.app import create_app
from regalia.service import Service


class ThreadServer:
    """``create_app(settings)`` served by uvicorn in a thread, on a free port;
    around ``service`` if given (so the server shares the test's clock)."""

    def __init__(self, settings: Settings, service: Service | None = None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(settings, service=service), log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


class ServerProcess:
    """``regalia server`` as a child process, its output in ``log``."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        log: Path,
        log_level: str = "warning",
        args: Sequence[str] = (),
        command: Sequence[str] = (sys.executable, "-m", "regalia", "server"),
    ) -> None:
        self.env = env
        self.command = list(command)
        self.args = list(args)
        self.workers = workers
        self.log_level = log_level
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.api_key: str | None = None

    def start(self, timeout: float = 30) -> ServerProcess:
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                *self.command,
                "--port",
                "0",
                "--workers",
                str(self.workers),
                "--log-level",
                self.log_level,
                *self.args,
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        text = ""
        while "Regalia server on" not in text:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-2000:]}")
            text += line
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start in time")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.url = re.search(r"http://127\.0\.0\.1:\d+", text.split("Regalia server on")[1])[0]
        found = re.search(r"\b(rg_[A-Za-z0-9_-]+)", text)
        self.api_key = found.group(1) if found else None
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server does not answer /healthz")
            time.sleep(0.02)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (SQLAlchemy URL), dropped afterwards."""
    import psycopg

    name = f"regalia_nodes_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Nodes:
    """Several ``regalia server`` processes of one deployment: one database, one
    ``REGALIA_SECRET_KEY``, one blob store (``blob_env``: the variables naming it,
    by default a shared ``REGALIA_BLOB_DIR``), and each its own ``REGALIA_HOME``
    (nothing a node keeps there may matter to another). The first node starts
    first and prints the admin key (``api_key``)."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        *,
        count: int = 2,
        blob_env: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        from cryptography.fernet import Fernet

        shared = {
            **os.environ,
            "REGALIA_DATABASE_URL": database_url,
            "REGALIA_SECRET_KEY": Fernet.generate_key().decode(),
            **(blob_env if blob_env is not None else {"REGALIA_BLOB_DIR": str(root / "blobs")}),
            **(env or {}),
        }
        shared.pop("REGALIA_BASE_URL", None)
        shared.pop("REGALIA_API_KEY", None)
        self.env = shared
        self.servers = [
            ServerProcess(
                {**shared, "REGALIA_HOME": str(root / f"node{i}")}, log=root / f"node{i}.log"
            )
            for i in range(count)
        ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def api_key(self) -> str:
        key = self.servers[0].api_key
        assert key is not None, "the first node did not print the admin key"
        return key

    def __enter__(self) -> Nodes:
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            if server.proc is not None:
                server.stop()
