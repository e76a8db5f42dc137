"""Figures of ``regalia server`` measured over HTTP, through the SDK's HTTP backend.

    .venv/bin/python bench/bench_server.py --quick      # small N, 64 MiB file (~1 min)
    .venv/bin/python bench/bench_server.py              # full run (1 GiB file, ~5 minutes)
    .venv/bin/python bench/bench_server.py --quick \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

The server is started as a child process, exactly as an operator would:
``python -m regalia server --port 0 --log-level warning --workers W`` with
REGALIA_HOME set to a fresh temporary folder (SQLite file, blobs, uploads).
With ``--database-url`` a fresh database is created on that PostgreSQL server
(its name replaces the URL's), used by the server, and dropped at the end.
The client (this process) has a home of its own (its download cache) in the
same temporary folder, on the same disk, and talks to the server through
``REGALIA_BASE_URL`` / ``REGALIA_API_KEY`` (the key the server prints on its
first start).

Measured, in this order:

* start: from ``Popen`` to the first 200 of ``/healthz``; idle RSS (and PSS)
  of the server's process tree right after;
* links/s: ``run.link_artifact`` of N distinct pre-logged versions into one
  collection, sequentially, then with ``--threads`` client threads (one
  shared SDK client, its connection pool giving each thread a connection);
* alias moves/s: ``HttpBackend.add_aliases`` moving one alias between
  versions, sequentially and with ``--threads`` threads; and the SDK way
  (``Api().artifact`` + ``aliases.append`` + ``save()``), for information;
* latency, on one kept-alive connection each, interleaved in blocks so that
  drifting machine load hits all alike: ``HttpBackend.resolve(coll:alias)``,
  a raw ``httpx`` GET of ``/api/v1/resolve`` (no SDK decoding), and a GET of
  ``/healthz`` (the HTTP stack's floor). The server's own time per request
  (its Prometheus histogram: middleware to last byte) and the CPU per request
  of the server's process tree and of this client are shown next to them (and
  next to the links and moves);
* a large random file logged through the SDK (``log_artifact``: hash, upload
  in resumable parts, server re-hash, fsync) and downloaded
  (``Api().artifact(...).download(root=new folder)``, client cache emptied
  first, so the bytes cross HTTP), each against ``cp`` + ``fsync`` and ``cp``
  of the same file on the same disk in the same run (page cache warm on both
  sides, dirty pages written back before each measurement, median of
  ``--repeats``). A download served from the client cache is shown too;
* a restart of the server on the store it has just filled, for information.

This is a benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1 << 20
ALIAS = "champion"
ENTITY, PROJECT = "bench", "server"
TARGET = "wandb-registry-model/bench"
RESOLVE_PATH = f"{TARGET}:{ALIAS}"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Row:
    name: str
    value: str
    goal: str = ""
    ok: bool | None = None  # None: no goal
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small N and a 64 MiB file")
    p.add_argument(
        "--database-url",
        help="a PostgreSQL server to run on (a fresh database is created there and dropped)",
    )
    p.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    p.add_argument("--links", type=int, help="versions to link (default 1000; quick 100)")
    p.add_argument("--moves", type=int, help="alias moves (default 2000; quick 200)")
    p.add_argument(
        "--resolves", type=int, help="requests per latency figure (default 2000; quick 200)"
    )
    p.add_argument(
        "--threads", type=int, default=4, help="client threads for the concurrent figures"
    )
    p.add_argument("--file-mib", type=int, help="size of the large file (default 1024; quick 64)")
    p.add_argument("--repeats", type=int, default=3, help="repetitions per transfer (median)")
    p.add_argument("--dir", help="where to make the temporary folder (default: the system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("-v", "--verbose", action="store_true", help="print every repetition")
    args = p.parse_args(argv)
    args.links = args.links or (100 if args.quick else 1000)
    args.moves = args.moves or (200 if args.quick else 2000)
    args.resolves = args.resolves or (200 if args.quick else 2000)
    args.file_mib = args.file_mib or (64 if args.quick else 1024)
    return args


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    return f"{os.getloadavg()[0]:.2f}"


def settle() -> None:
    """Write back dirty pages of earlier steps so they do not slow the next measurement."""
    os.sync()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- PostgreSQL scratch database --------------------------------------------------------------
class ScratchDatabase:
    """A fresh database on the PostgreSQL server of ``url``, dropped on close."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        given = make_url(url)
        self.name = f"regalia_bench_{uuid.uuid4().hex[:10]}"
        admin = given.set(drivername="postgresql", database="postgres")
        self.admin = admin.render_as_string(hide_password=False)
        self.url = given.set(drivername="postgresql+psycopg", database=self.name).render_as_string(
            hide_password=False
        )
        self._execute(f'CREATE DATABASE "{self.name}"')

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.encode())

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# -- the server process -----------------------------------------------------------------------
class Server:
    """``regalia server`` as a child process in a session of its own."""

    def __init__(self, home: Path, workers: int, database_url: str | None, log_path: Path):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
        self.env.update(
            REGALIA_HOME=str(home),
            REGALIA_ORG=f"bench-{uuid.uuid4().hex[:8]}",
            REGALIA_SILENT="1",
            PYTHONUNBUFFERED="1",
        )
        if database_url:
            self.env["REGALIA_DATABASE_URL"] = database_url
        self.workers = workers
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.api_key = ""
        self.banner = ""
        self.banner_after = 0.0

    def start(self, timeout: float = 60) -> float:
        """Start it; return the seconds from Popen to the first 200 of /healthz."""
        import httpx

        self._log = self.log_path.open("ab")
        lines: queue.Queue[str | None] = queue.Queue()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regalia",
                "server",
                "--port",
                "0",
                "--log-level",
                "warning",
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        out = self.proc.stdout

        def pump() -> None:
            for raw in iter(out.readline, b""):
                lines.put(raw.decode(errors="replace"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = t0 + timeout
        text = ""
        while "Regalia server on" not in text:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                raise RuntimeError("the server did not print its address in time") from None
            if line is None:
                raise RuntimeError(f"the server exited:\n{self.log_path.read_text()[-3000:]}")
            text += line
        self.banner_after = time.perf_counter() - t0
        found = re.search(r"http://[\d.]+:\d+", text.split("Regalia server on", 1)[1])
        key = re.search(r"\b(rg_[A-Za-z0-9_-]+)", text)
        if found is None or (key is None and not self.api_key):
            raise RuntimeError(f"unexpected server output:\n{text}")
        self.url = found.group(0)
        if key is not None:  # printed on the first start only
            self.api_key = key.group(1)
        self.banner = next(ln for ln in text.splitlines() if "Regalia server on" in ln)
        with httpx.Client(base_url=self.url, timeout=1.0) as probe:
            while True:
                try:
                    if probe.get("/healthz").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                if time.perf_counter() > deadline:
                    raise RuntimeError("the server does not answer /healthz")
                time.sleep(0.005)

    def processes(self) -> list[Any]:
        import psutil  # type: ignore[import-untyped]

        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def memory(self) -> tuple[float, float | None]:
        """RSS and PSS (MB) summed over the process tree (PSS counts shared pages once)."""
        rss, pss = 0, 0
        have_pss = True
        for p in self.processes():
            try:
                full = p.memory_full_info()
                rss += full.rss
                pss += getattr(full, "pss", 0)
                have_pss = have_pss and hasattr(full, "pss")
            except Exception:  # noqa: BLE001 - e.g. no access to smaps: RSS only
                rss += p.memory_info().rss
                have_pss = False
        return rss / 1e6, (pss / 1e6 if have_pss else None)

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except Exception:  # noqa: BLE001 - a process that just exited
                pass
        return total

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class ServerClock:
    """Server-side time and CPU over a stretch of requests: the Prometheus
    histogram's sum/count per route, the server tree's CPU seconds, and this
    (client) process's CPU seconds."""

    def __init__(self, server: Server) -> None:
        import httpx

        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=30)

    def snapshot(self) -> tuple[dict[str, tuple[float, float]], float, float]:
        client_cpu = time.process_time()
        text = self.client.get("/metrics").text
        per_route: dict[str, list[float]] = {}
        for m in re.finditer(
            r'^regalia_http_request_duration_seconds_(sum|count)\{method="(\w+)",route="([^"]*)"\}'
            r" ([0-9.e+-]+)$",
            text,
            re.M,
        ):
            kind, method, route, value = m.groups()
            slot = per_route.setdefault(f"{method} {route}", [0.0, 0.0])
            slot[0 if kind == "sum" else 1] += float(value)
        # With several workers /metrics shows one worker's registry: an estimate only.
        routes = {k: (v[0], v[1]) for k, v in per_route.items()}
        return routes, self.server.cpu_seconds(), client_cpu

    @staticmethod
    def mean_ms(
        before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], route: str
    ) -> float | None:
        if route not in after:  # labelled without the /api/v1 prefix
            route = route.replace(" /api/v1/", " /", 1)
        s0, c0 = before.get(route, (0.0, 0.0))
        s1, c1 = after.get(route, (0.0, 0.0))
        return (s1 - s0) / (c1 - c0) * 1000 if c1 > c0 else None

    def close(self) -> None:
        self.client.close()


# -- client environment -----------------------------------------------------------------------
def set_client_environment(home: Path, server: Server) -> None:
    """Point the SDK at the server before anything reads the settings."""
    for name in [k for k in os.environ if k.startswith("REGALIA_")]:
        os.environ.pop(name)
    os.environ["REGALIA_HOME"] = str(home)
    os.environ["REGALIA_CACHE_DIR"] = str(home / "cache")
    os.environ["REGALIA_SILENT"] = "1"
    os.environ["REGALIA_BASE_URL"] = server.url
    os.environ["REGALIA_API_KEY"] = server.api_key


def per_call(before: Any, after: Any, n: int, route: str | None = None) -> str:
    """What one call cost: the server's own time (its histogram), the server's
    CPU and this client's CPU (both machines' CPUs are the same two here)."""
    ms = ServerClock.mean_ms(before[0], after[0], route) if route else None
    server = f"server {ms:.2f} ms/req, " if ms is not None else ""
    cpu = (after[1] - before[1]) / n * 1000
    client = (after[2] - before[2]) / n * 1000
    return f"{server}CPU server {cpu:.2f} + client {client:.2f} ms/call"


def in_threads(n_threads: int, items: Sequence[Any], fn: Callable[[Any], object]) -> float:
    """Run ``fn`` over ``items`` split among ``n_threads`` threads; the wall time."""
    slices = [items[i::n_threads] for i in range(n_threads)]
    start = threading.Barrier(n_threads + 1)

    def worker(part: Sequence[Any]) -> None:
        start.wait()
        for item in part:
            fn(item)

    with ThreadPoolExecutor(n_threads) as pool:
        futures = [pool.submit(worker, s) for s in slices]
        start.wait()
        t0 = time.perf_counter()
        for f in futures:
            f.result()
        return time.perf_counter() - t0


# -- metadata figures -------------------------------------------------------------------------
def bench_metadata(args: argparse.Namespace, work: Path, server: Server, rows: list[Row]) -> None:
    import httpx

    import regalia
    from regalia.sdk.http import HttpBackend

    clock = ServerClock(server)
    run = regalia.init(entity=ENTITY, project=PROJECT)
    backend = run._backend
    assert isinstance(backend, HttpBackend), "the SDK must talk to the server"

    small = work / "small"
    small.mkdir()
    n_seq, n_mt = args.links, args.links
    drafts = []
    for i in range(n_seq + n_mt):
        path = small / f"f{i}.bin"
        path.write_bytes(f"version {i} {uuid.uuid4()}\n".encode())
        art = regalia.Artifact("src", type="model")
        art.add_file(path, name="model.bin")
        drafts.append(art)
    log(f"logging {len(drafts)} small versions")
    b = clock.snapshot()
    t = timed(lambda: [run.log_artifact(a) for a in drafts])
    a = clock.snapshot()
    rows.append(
        Row(
            "log small versions (SDK, for links)",
            f"{len(drafts) / t:,.0f} /s",
            note=f"N={len(drafts)}; 3 requests each; " + per_call(b, a, len(drafts)),
        )
    )
    shutil.rmtree(small)

    log(f"linking {n_seq} versions, then {n_mt} with {args.threads} threads")
    links: list[regalia.Artifact] = []
    b = clock.snapshot()
    t = timed(lambda: links.extend(run.link_artifact(a, TARGET) for a in drafts[:n_seq]))
    a = clock.snapshot()
    rate = n_seq / t
    rows.append(
        Row(
            "links into one collection (SDK)",
            f"{rate:,.0f} /s",
            goal=">= 400/s",
            ok=rate >= 400,
            note=f"N={n_seq}; run.link_artifact; "
            + per_call(b, a, n_seq, "POST /api/v1/versions/{membership_id}/links"),
        )
    )
    mt_links: list[Any] = []
    lock = threading.Lock()

    def link_one(art: Any) -> None:
        linked = run.link_artifact(art, TARGET)
        with lock:
            mt_links.append(linked)

    b = clock.snapshot()
    t = in_threads(args.threads, drafts[n_seq:], link_one)
    a = clock.snapshot()
    rate = n_mt / t
    rows.append(
        Row(
            f"  same, {args.threads} client threads",
            f"{rate:,.0f} /s",
            goal=">= 400/s",
            ok=rate >= 400,
            note=f"N={n_mt}, same collection; " + per_call(b, a, n_mt),
        )
    )
    versions = sorted(int(x.version[1:]) for x in [*links, *mt_links])
    assert versions == list(range(n_seq + n_mt)), "every link must get its own vN"

    ids = [int(x.id or 0) for x in links]
    count = len(ids)
    log(f"moving '{ALIAS}' {args.moves} times, then with {args.threads} threads, then SDK way")
    route = "POST /api/v1/versions/{membership_id}/aliases"

    def moves() -> None:
        # Consecutive targets always differ, so every call really moves the alias.
        for i in range(args.moves):
            backend.add_aliases(ids[(i + 1) % count], [ALIAS])

    b = clock.snapshot()
    t = timed(moves)
    a = clock.snapshot()
    rate = args.moves / t
    rows.append(
        Row(
            "alias moves (HttpBackend.add_aliases)",
            f"{rate:,.0f} /s",
            goal=">= 400/s",
            ok=rate >= 400,
            note=f"N={args.moves}; " + per_call(b, a, args.moves, route),
        )
    )
    b = clock.snapshot()
    t = in_threads(
        args.threads,
        list(range(args.moves)),
        lambda i: backend.add_aliases(ids[i % count], [ALIAS]),
    )
    a = clock.snapshot()
    rate = args.moves / t
    rows.append(
        Row(
            f"  same, {args.threads} client threads",
            f"{rate:,.0f} /s",
            goal=">= 400/s",
            ok=rate >= 400,
            note=f"N={args.moves}, one alias; " + per_call(b, a, args.moves),
        )
    )
    api = regalia.Api()

    def sdk_moves() -> None:
        for i in range(args.moves):
            art = api.artifact(f"{TARGET}:v{i % count}")
            art.aliases.append(ALIAS)
            art.save()

    t = timed(sdk_moves)
    rows.append(
        Row(
            "  SDK way: Api().artifact + save()",
            f"{args.moves / t:,.0f} /s",
            note=f"N={args.moves}; 2 requests each (resolve, set aliases); for information",
        )
    )
    history = backend.history("model", "bench", alias=ALIAS, limit=1)
    assert history.items and history.items[0].alias == ALIAS

    # -- latency ---------------------------------------------------------------------------
    log(f"latency: {args.resolves} x resolve (SDK), raw GET /api/v1/resolve, GET /healthz")
    want = backend.resolve(RESOLVE_PATH)
    assert ALIAS in want.aliases
    health = httpx.Client(base_url=server.url, timeout=30)
    raw = httpx.Client(
        base_url=server.url,
        timeout=30,
        headers={"Authorization": f"Bearer {server.api_key}"},
    )

    def sdk_resolve() -> None:
        backend.resolve(RESOLVE_PATH)

    def raw_resolve() -> None:
        r = raw.get("/api/v1/resolve", params={"path": RESOLVE_PATH})
        assert r.status_code == 200
        r.content  # noqa: B018 - read, not decoded

    def healthz() -> None:
        r = health.get("/healthz")
        assert r.status_code == 200

    def api_artifact() -> None:
        api.artifact(RESOLVE_PATH)

    kinds: dict[str, Callable[[], None]] = {
        "sdk": sdk_resolve,
        "raw": raw_resolve,
        "healthz": healthz,
        "api": api_artifact,
    }
    for fn in kinds.values():  # warm every connection and code path
        for _ in range(50):
            fn()
    lat: dict[str, list[float]] = {k: [] for k in kinds}
    server_ms: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, float] = dict.fromkeys(kinds, 0.0)
    client_cpu: dict[str, float] = dict.fromkeys(kinds, 0.0)
    block = 100
    routes = {
        "sdk": "GET /api/v1/resolve",
        "raw": "GET /api/v1/resolve",
        "healthz": "GET /healthz",
        "api": "GET /api/v1/resolve",
    }
    done = 0
    while done < args.resolves:
        n = min(block, args.resolves - done)
        for k, fn in kinds.items():
            b = clock.snapshot()
            for _ in range(n):
                t0 = time.perf_counter_ns()
                fn()
                lat[k].append((time.perf_counter_ns() - t0) / 1e6)
            a = clock.snapshot()
            ms = ServerClock.mean_ms(b[0], a[0], routes[k])
            if ms is not None:
                server_ms[k].append(ms)
            cpu[k] += a[1] - b[1]
            client_cpu[k] += a[2] - b[2]
        done += n
    health.close()
    raw.close()
    clock.close()

    med = {k: statistics.median(v) for k, v in lat.items()}
    p95 = {k: percentile(v, 0.95) for k, v in lat.items()}

    def srv(k: str) -> str:
        s = f"server {statistics.mean(server_ms[k]):.2f} ms/req, " if server_ms[k] else ""
        n = len(lat[k])
        return s + f"CPU server {cpu[k] / n * 1000:.2f} + client {client_cpu[k] / n * 1000:.2f} ms"

    ratio = med["sdk"] / med["healthz"]
    rows += [
        Row(
            "resolve coll:alias (HttpBackend) median",
            f"{med['sdk']:.2f} ms",
            note=f"N={len(lat['sdk'])}, kept-alive; {srv('sdk')}",
        ),
        Row("  p95", f"{p95['sdk']:.2f} ms"),
        Row(
            "raw httpx GET /api/v1/resolve median",
            f"{med['raw']:.2f} ms",
            note=f"p95 {p95['raw']:.2f} ms; no SDK decoding; {srv('raw')}",
        ),
        Row(
            "GET /healthz median",
            f"{med['healthz']:.2f} ms",
            note=f"p95 {p95['healthz']:.2f} ms; httpx.Client kept-alive; {srv('healthz')}",
        ),
        Row(
            "resolve / healthz (medians)",
            f"{ratio:.2f}",
            goal="<= 2",
            ok=ratio <= 2,
            note=f"raw resolve / healthz {med['raw'] / med['healthz']:.2f}; "
            f"SDK decoding {med['sdk'] - med['raw']:+.2f} ms",
        ),
        Row(
            "Api().artifact(coll:alias) median",
            f"{med['api']:.2f} ms",
            note=f"p95 {p95['api']:.2f} ms; the public SDK call; for information",
        ),
    ]


# -- transfer figures -------------------------------------------------------------------------
def make_random_file(path: Path, size: int) -> None:
    chunk = 64 * MiB
    with path.open("wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def read_once(path: Path) -> None:
    """Read the whole file so that it sits in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 16 * MiB):
            pass
    finally:
        os.close(fd)


def cp(src: Path, dst: Path, *, fsync: bool) -> float:
    def go() -> None:
        subprocess.run(["cp", str(src), str(dst)], check=True)
        if fsync:
            fd = os.open(dst, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    return timed(go)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def server_blob(server_home: Path, digest: str) -> Path:
    return server_home / "blobs" / digest[:2] / digest[2:4] / digest


def bench_transfers(
    args: argparse.Namespace, work: Path, server: Server, server_home: Path, rows: list[Row]
) -> None:
    import regalia
    from regalia.sdk.cache import ArtifactCache

    size = args.file_mib * MiB
    xfer = work / "xfer"
    xfer.mkdir()
    src = xfer / "random.bin"
    log(f"transfers: {args.file_mib} MiB file, {args.repeats} repeats")
    make_random_file(src, size)
    read_once(src)
    # One untimed copy first: here the first copy after a while costs up to 3x the
    # next ones (memory touched for the first time), which would flatter the ratios.
    cp(src, xfer / "warm.bin", fsync=True)
    remove(xfer / "warm.bin")
    run = regalia.init(entity=ENTITY, project=PROJECT)
    backend = run._backend
    api = regalia.Api()
    sdk_cache = ArtifactCache(Path(os.environ["REGALIA_CACHE_DIR"]))

    cp_sync, upload = [], []
    for rep in range(args.repeats):
        dst = xfer / f"cp-{rep}.bin"
        settle()
        cp_sync.append(cp(src, dst, fsync=True))
        remove(dst)

        settle()
        art = regalia.Artifact(f"big-{rep}", type="model")

        def log_big(art: regalia.Artifact = art) -> None:
            art.add_file(src, name="big.bin")
            run.log_artifact(art)

        upload.append(timed(log_big))
        digest = art.files()[0].digest
        art.delete()  # frees the blob, so the next repetition uploads it again (R9)
        missing = backend.call("POST", "/blobs/missing", json={"digests": [digest]})["missing"]
        assert missing == [digest], "the blob must be uploaded anew each time"

    logged = regalia.Artifact("big", type="model")
    logged.add_file(src, name="big.bin")
    run.log_artifact(logged)
    digest = logged.files()[0].digest
    read_once(server_blob(server_home, digest))  # the server reads from the page cache too
    artifact = api.artifact(f"{ENTITY}/{PROJECT}/big:latest")

    def download(root: Path) -> float:
        settle()
        took = timed(lambda: artifact.download(root=root))
        assert (root / "big.bin").stat().st_size == size
        remove(root)
        return took

    cp_plain, down, cached = [], [], []
    for rep in range(args.repeats):
        dst = xfer / f"cp-plain-{rep}.bin"
        settle()
        cp_plain.append(cp(src, dst, fsync=False))
        remove(dst)
        sdk_cache.clean()  # the bytes must cross HTTP
        down.append(download(xfer / f"download-{rep}"))
    for rep in range(args.repeats):  # served from the client cache filled above
        cached.append(download(xfer / f"cached-{rep}"))
    sdk_cache.clean()
    logged.delete()
    remove(src)
    settle()

    samples = {
        "cp_sync": cp_sync,
        "upload": upload,
        "cp": cp_plain,
        "download": down,
        "cached": cached,
    }
    if args.verbose:
        for k, v in samples.items():
            print(f"{k:>10}: " + "  ".join(f"{x:.3f}" for x in v) + " s", file=sys.stderr)
    m = {k: statistics.median(v) for k, v in samples.items()}
    mb = size / 1e6

    def speed(name: str) -> str:
        return f"{m[name]:.2f} s ({mb / m[name]:,.0f} MB/s)"

    label = f"{args.file_mib} MiB" if args.file_mib < 1024 else f"{args.file_mib // 1024} GiB"
    rows.append(
        Row(
            f"cp + fsync / cp of {label}",
            f"{speed('cp_sync')}",
            note=f"cp {speed('cp')}; the references, same disk, same run",
        )
    )
    for what, ref, goal in (
        ("upload", "cp_sync", 2.0),
        ("upload", "cp", 2.0),
        ("download", "cp_sync", 2.0),
        ("download", "cp", 2.0),
    ):
        r = m[what] / m[ref]
        ref_name = "cp + fsync" if ref == "cp_sync" else "cp"
        label_what = "log_artifact" if what == "upload" else "download (cache emptied)"
        rows.append(
            Row(
                f"{label_what} {label} / ({ref_name})",
                f"{r:.2f}",
                goal=f"<= {goal:g}",
                ok=r <= goal,
                note=f"{what} {speed(what)}",
            )
        )
    rows.append(
        Row(
            "  download from the client cache / cp",
            f"{m['cached'] / m['cp']:.2f}",
            note=f"{speed('cached')}; verified copy, no HTTP transfer; for information",
        )
    )


# -- output -----------------------------------------------------------------------------------
def print_table(rows: list[Row], header: str) -> None:
    cols = ("figure", "value", "goal", "", "notes")
    data = [
        (r.name, r.value, r.goal or "-", {True: "ok", False: "MISSED", None: ""}[r.ok], r.note)
        for r in rows
    ]
    widths = [max(len(c), *(len(d[i]) for d in data)) for i, c in enumerate(cols)]
    line = "  ".join("-" * w for w in widths)
    print(header)
    print(line)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    print(line)
    for d in data:
        print(
            "  ".join(
                v.rjust(w) if i == 1 else v.ljust(w)
                for i, (v, w) in enumerate(zip(d, widths, strict=True))
            ).rstrip()
        )
    print(line)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="regalia-bench-server-", dir=args.dir))
    server_home, client_home = work / "server", work / "client"
    server_home.mkdir()
    client_home.mkdir()
    scratch = ScratchDatabase(args.database_url) if args.database_url else None
    db = f"PostgreSQL (database {scratch.name})" if scratch else "SQLite (embedded)"
    rows: list[Row] = []
    server = Server(
        server_home, args.workers, scratch.url if scratch else None, work / "server.log"
    )
    header = ""
    try:
        log(f"starting the server ({args.workers} worker(s), {db}) in {work}")
        took = server.start()
        header = (
            f"regalia bench_server: {db}, {args.workers} worker(s), over HTTP at {server.url}\n"
            f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
            f"{'quick' if args.quick else 'full'} run, load average {load()}"
        )
        time.sleep(1.0)  # let the start settle before measuring idle memory
        rss, pss = server.memory()
        pss_note = f", PSS {pss:.0f} MB" if pss is not None else ""
        ready = re.search(r"ready in ([0-9.]+) s", server.banner)
        rows += [
            Row(
                "server start (Popen -> first 200 /healthz)",
                f"{took:.2f} s",
                goal="<= 2 s",
                ok=took <= 2,
                note=f"banner after {server.banner_after:.2f} s (it says ready in "
                f"{ready.group(1) if ready else '?'} s), "
                f"/healthz {took - server.banner_after:.2f} s later",
            ),
            Row(
                "idle RSS of the server process tree",
                f"{rss:.0f} MB",
                goal="<= 150 MB",
                ok=rss <= 150,
                note=f"{len(server.processes())} process(es){pss_note}",
            ),
        ]
        set_client_environment(client_home, server)
        bench_metadata(args, work, server, rows)
        rss, pss = server.memory()
        rows.append(
            Row(
                "  RSS after the metadata figures",
                f"{rss:.0f} MB",
                note=(f"PSS {pss:.0f} MB; " if pss is not None else "") + "for information",
            )
        )
        bench_transfers(args, work, server, server_home, rows)
        rss, _ = server.memory()
        rows.append(Row("  RSS after the transfers", f"{rss:.0f} MB", note="for information"))
        server.stop()
        log("restarting the server on the same store")
        took = server.start()
        rows.append(
            Row(
                "  restart on the existing store",
                f"{took:.2f} s",
                note=f"banner after {server.banner_after:.2f} s; for information",
            )
        )
    finally:
        code = server.stop()
        if code not in (0, None, -signal.SIGTERM):
            log(f"the server exited with {code}; its log: {work / 'server.log'}")
        if scratch is not None:
            scratch.drop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, header + f" (at the end: {load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
