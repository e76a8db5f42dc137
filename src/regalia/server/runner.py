"""``regalia server``: prepare the store, then serve with one or more processes.

The parent migrates the database and creates the organization once, then
either serves itself (one worker) or forks workers that each listen on the
same port with ``SO_REUSEPORT`` (the kernel spreads connections; no shared
accept socket, whose handling added ~40 ms per kept-alive request with
uvicorn's own ``--workers`` here). A port already in use is refused, with one
process or several (see :func:`reserve`), before the store is touched.
SIGTERM or Ctrl-C stops accepting, lets requests in flight finish (up to
``GRACE_SECONDS``), then exits.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import uvicorn

from regalia.blobs.s3 import S3BlobStore
from regalia.config import Settings
from regalia.errors import AddressInUse
from regalia.server.observe import configure_logging
from regalia.server.sweeper import sweep_once
from regalia.server.uploads import UploadArea
from regalia.service import Service

LOG = logging.getLogger("regalia.server")
GRACE_SECONDS = 10


def prepare(settings: Settings, out: TextIO) -> None:
    """Check an S3 store's bucket, migrate, create the organization on first
    start, sweep what crashed transfers left (:mod:`regalia.server.sweeper`),
    and say how to get a key."""
    svc = Service(settings)
    try:
        if isinstance(svc.blobs, S3BlobStore):
            svc.blobs.check_bucket()  # a missing bucket or a wrong endpoint, said at once
        owner = svc.ensure_org()
        svc.check_secret_key()  # one key for every node (see Service.check_secret_key)
        key = svc.first_api_key(owner)
        svc.sweep_web_sessions()  # ended UI sessions (logins sweep them too)
        sweep_once(svc, UploadArea(settings.home / "uploads", settings.upload_part_bytes))
    finally:
        svc.close()
    if key is not None:
        print(
            f"Organization {owner.org_name!r} is ready. API key of its admin "
            f"{owner.name!r} (shown once, keep it):\n\n    {key}\n\n"
            "Use it with: regalia login --base-url http://HOST:PORT --api-key KEY",
            file=out,
        )
    else:
        print(
            f"Organization {owner.org_name!r}. A new admin API key: "
            f"regalia --home {settings.home} init",
            file=out,
        )


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` (not listening yet).

    Raises:
        AddressInUse: another process holds the address (naming host and port).
        OSError: another failure, its message naming host and port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(
                f"cannot listen on {host}:{port}: the address is already in use (another "
                "Regalia server, or another program, holds it): stop that one, or choose "
                "another --port",
                host=host,
                port=port,
            ) from None
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def reserve(host: str, port: int) -> socket.socket:
    """The anchor of a server of several workers: a socket bound with
    ``SO_REUSEPORT`` to ``(host, port)`` (port 0: a free one), not listening.

    ``SO_REUSEPORT`` lets any process of this user bind the same port, so a
    second server would silently share it (the kernel then spreads requests over
    two stores). A plain bind first proves the port free, as for one process,
    and resolves port 0; the anchor then takes that port.

    Raises:
        AddressInUse: the port is taken (by one process or by several workers).
    """
    probe = bind(host, port, reuse_port=False)
    port = probe.getsockname()[1]
    probe.close()
    return bind(host, port, reuse_port=True)


@dataclass(frozen=True)
class Proxy:
    """Whether to trust a reverse proxy's ``X-Forwarded-Proto``/``-For`` headers
    (uvicorn's proxy headers middleware), and from which addresses (a comma
    separated list of IPs or networks, or ``*``)."""

    headers: bool = False
    allow_ips: str = "127.0.0.1,::1"


def _uvicorn(
    settings: Settings,
    sock: socket.socket,
    log_level: str,
    ready: Callable[[], None] | None = None,
    proxy: Proxy = Proxy(),
) -> None:
    from regalia.server.app import create_app

    configure_logging(log_level)
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACE_SECONDS,
        log_level=log_level,
        proxy_headers=proxy.headers,
        forwarded_allow_ips=proxy.allow_ips,
    )
    sock.listen(2048)
    if ready is not None:
        ready()  # the app is built and the socket listens: requests wait for the loop
    uvicorn.Server(config).run(sockets=[sock])


def _worker(settings: Settings, host: str, port: int, log_level: str, proxy: Proxy) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _uvicorn(settings, bind(host, port, reuse_port=True), log_level, proxy=proxy)


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    log_level: str = "info",
    out: TextIO = sys.stdout,
    proxy: Proxy = Proxy(),
) -> None:
    started = time.monotonic()
    configure_logging(log_level)
    if workers <= 1:
        # The port first: a server refused for its port changes nothing in the store.
        sock = bind(host, port, reuse_port=False)
        try:
            prepare(settings, out)
        except BaseException:
            sock.close()
            raise

        def ready() -> None:
            print(_banner(sock, workers, started), file=out, flush=True)

        _uvicorn(settings, sock, log_level, ready, proxy)
        return
    # Reserve the port (resolving port 0) without listening: only the workers'
    # listening sockets receive connections.
    anchor = reserve(host, port)
    port = anchor.getsockname()[1]
    try:
        prepare(settings, out)
    except BaseException:
        anchor.close()
        raise
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_worker, args=(settings, host, port, log_level, proxy), daemon=False)
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    print(_banner(anchor, workers, started), file=out, flush=True)

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.2)
        if not stopping:
            LOG.error("a worker exited; stopping the server")
            stop(signal.SIGTERM, None)
        for p in procs:
            p.join(GRACE_SECONDS + 5)
            if p.is_alive():
                p.kill()
    finally:
        anchor.close()


def _banner(sock: socket.socket, workers: int, started: float) -> str:
    host, port = sock.getsockname()[:2]
    return (
        f"Regalia server on http://{host}:{port} ({workers} worker"
        f"{'s' if workers != 1 else ''}), ready in {time.monotonic() - started:.2f} s; "
        f"API docs at http://{host}:{port}/docs"
    )
