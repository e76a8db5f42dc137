"""Figures of automations (SPEC §5) through a real ``regalia server`` process.

    .venv/bin/python bench/bench_automations.py --quick    # about a minute
    .venv/bin/python bench/bench_automations.py            # about 3 minutes
    .venv/bin/python bench/bench_automations.py --quick \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

A receiver in this process (HTTP/1.1, keep-alive, threaded, on 127.0.0.1)
answers 200 at once and notes when each event arrives. The server runs as in
``bench_server.py`` (a child process, a fresh REGALIA_HOME, its first key),
with ``REGALIA_AUTOMATION_ALLOW_PRIVATE=1`` (the receiver is on loopback) and
``REGALIA_AUTOMATION_WEBHOOK_RATE=0`` (no per-target pace, so the figures are
the worker's, not the pace's; the default pace is 20 messages/s per URL).

Measured, in this order:

1. The added latency of an alias change with 10 automations attached: moves
   of one alias between two versions (``POST /versions/{id}/aliases``, one
   kept-alive connection), in blocks alternating 0 and 10 automations on the
   registry (each fires on every move: 10 deliveries per change), so that
   drifting machine load hits both alike. First with no worker running (the
   outbox's own cost, in the change's transaction), then with the worker in
   the server sending as the moves go (what a deployment sees): at full speed
   (10 deliveries per change, more than the worker sends, so it never rests),
   and at 10 changes per second (100 deliveries per second).
2. Worker throughput: N moves with 10 automations queued while no worker
   runs, then one ``regalia worker`` process sends the backlog; events per
   second from its first delivery to its last.
3. End to end: one automation; distinct aliases added as fast as one client
   can, events per second from the first change to the last arrival, and the
   time from each change's answer to its event's arrival (median, p95); then
   the same latency with changes paced at 20 per second (no backlog).

This is a benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import (  # noqa: E402
    Row,
    ScratchDatabase,
    Server,
    load,
    log,
    percentile,
    print_table,
    set_client_environment,
)

TARGET = "wandb-registry-model/bench"
AUTOMATIONS = 10


class Receiver:
    """Answers 200 at once; notes each event's arrival time by its alias."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.perf_counter()
                alias = json.loads(body).get("alias")
                with outer.lock:
                    outer.count += 1
                    outer.times.append(now)
                    outer.arrived.setdefault(alias, now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.arrived.clear()
            self.times.clear()
            self.count = 0

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while self.count < n:
            if time.perf_counter() > deadline:
                return False
            time.sleep(0.01)
        return True


class Bench:
    def __init__(self, args: argparse.Namespace, server: Server, rx: Receiver) -> None:
        import httpx

        self.args = args
        self.server = server
        self.rx = rx
        self.http = httpx.Client(
            base_url=server.url + "/api/v1",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        )
        self.ids: list[int] = []

    def seed(self, work: Path, n: int) -> None:
        """``n`` small versions linked into one collection (their membership ids)."""
        import regalia

        run = regalia.init(entity="bench", project="automations")
        for i in range(n):
            path = work / f"f{i}.bin"
            path.write_bytes(f"version {i} {time.time_ns()}\n".encode())
            art = regalia.Artifact("src", type="model")
            art.add_file(path, name="model.bin")
            run.log_artifact(art)
            self.ids.append(int(run.link_artifact(art, TARGET).id or 0))

    def automations(self, n: int, path: str = "hook") -> list[int]:
        made = []
        for k in range(n):
            r = self.http.post(
                "/registries/model/automations",
                json={
                    "name": f"{path}-{k}-{time.time_ns()}",
                    "event": "ADD_ARTIFACT_ALIAS",
                    "action": "webhook",
                    "target": f"{self.rx.url}/{path}{k}",
                },
            )
            r.raise_for_status()
            made.append(r.json()["id"])
        return made

    def drop(self, automation_ids: list[int]) -> None:
        for a in automation_ids:
            self.http.delete(f"/automations/{a}").raise_for_status()

    def add_alias(self, i: int, alias: str) -> float:
        t0 = time.perf_counter()
        r = self.http.post(
            f"/versions/{self.ids[i % len(self.ids)]}/aliases", json={"add": [alias]}
        )
        r.raise_for_status()
        return time.perf_counter() - t0

    def latency_blocks(self, label: str, rows: list[Row], per_second: float = 0) -> None:
        """Alias moves in blocks alternating 0 and 10 automations; as fast as one
        client can, or ``per_second``."""
        per_block = self.args.moves // 4 if not per_second else self.args.moves // 8
        times: dict[int, list[float]] = {0: [], AUTOMATIONS: []}
        move = 0
        for block in range(4):
            n = AUTOMATIONS if block % 2 else 0
            made = self.automations(n)
            t0 = time.perf_counter()
            for k in range(per_block):
                times[n].append(self.add_alias(move % 2, "champion"))
                move += 1
                if per_second:
                    time.sleep(max(0.0, t0 + (k + 1) / per_second - time.perf_counter()))
            self.drop(made)  # its deliveries go with it
        base, ten = times[0], times[AUTOMATIONS]
        med0, med10 = statistics.median(base) * 1000, statistics.median(ten) * 1000
        p0, p10 = percentile(base, 0.95) * 1000, percentile(ten, 0.95) * 1000
        rows.append(
            Row(
                f"alias change, 0 automations ({label})",
                f"{med0:.2f} ms",
                note=f"median; p95 {p0:.2f} ms; N={len(base)}",
            )
        )
        rows.append(
            Row(
                f"alias change, {AUTOMATIONS} automations ({label})",
                f"{med10:.2f} ms",
                note=f"median; p95 {p10:.2f} ms; N={len(ten)}; "
                f"{AUTOMATIONS} deliveries queued per change",
            )
        )
        rows.append(
            Row(
                f"  added latency ({label})",
                f"{med10 - med0:+.2f} ms",
                note=f"median; p95 {p10 - p0:+.2f} ms",
            )
        )

    def worker_throughput(self, work: Path, rows: list[Row]) -> None:
        n = self.args.backlog
        made = self.automations(AUTOMATIONS, "drain")
        self.rx.reset()
        for i in range(n):
            self.add_alias(i % 2, "champion")
        expected = n * AUTOMATIONS
        log(f"{expected} deliveries queued; starting `regalia worker`")
        env = dict(self.server.env)
        with (work / "worker.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "regalia", "worker", "--log-level", "warning"],
                env=env,
                stderr=out,
            )
            try:
                done = self.rx.wait_for(expected, timeout=600)
            finally:
                proc.terminate()
                proc.wait(30)
        times = sorted(self.rx.times)
        took = times[-1] - times[0]
        rows.append(
            Row(
                "worker throughput (`regalia worker`, backlog)",
                f"{(len(times) - 1) / took:,.0f} events/s",
                note=f"{len(times)} of {expected} delivered"
                f"{'' if done else ' (timed out)'}; {AUTOMATIONS} targets, "
                f"first to last delivery {took:.1f} s",
            )
        )
        self.drop(made)

    def end_to_end(self, rows: list[Row]) -> None:
        made = self.automations(1, "e2e")
        for label, n, gap in (
            ("as fast as one client can", self.args.events, 0.0),
            ("paced, 20 changes/s", self.args.events // 5, 0.05),
        ):
            self.rx.reset()
            acked: dict[str, float] = {}
            t0 = time.perf_counter()
            for i in range(n):
                alias = f"e{time.time_ns()}-{i}"
                self.add_alias(i, alias)
                acked[alias] = time.perf_counter()
                if gap:
                    time.sleep(max(0.0, t0 + (i + 1) * gap - time.perf_counter()))
            done = self.rx.wait_for(n, timeout=300)
            lat = [
                (self.rx.arrived[a] - t) * 1000 for a, t in acked.items() if a in self.rx.arrived
            ]
            last = max(self.rx.arrived.values())
            if not gap:
                rows.append(
                    Row(
                        "end to end throughput (worker in the server)",
                        f"{n / (last - t0):,.0f} events/s",
                        note=f"N={n} changes from one client, first change to last "
                        f"arrival{'' if done else ' (timed out)'}",
                    )
                )
            rows.append(
                Row(
                    f"change answered -> event arrived ({label})",
                    f"{statistics.median(lat):.1f} ms",
                    note=f"median; p95 {percentile(lat, 0.95):.1f} ms; N={len(lat)}",
                )
            )
        self.drop(made)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small N")
    p.add_argument("--database-url", help="a PostgreSQL server to run on (a scratch database)")
    p.add_argument("--moves", type=int, help="alias changes per latency figure (2000; quick 400)")
    p.add_argument("--backlog", type=int, help="changes queued for the worker (1000; quick 200)")
    p.add_argument("--events", type=int, help="end-to-end events (1000; quick 250)")
    p.add_argument("--dir", help="where to make the temporary folder")
    args = p.parse_args(argv)
    args.moves = args.moves or (400 if args.quick else 2000)
    args.backlog = args.backlog or (200 if args.quick else 1000)
    args.events = args.events or (250 if args.quick else 1000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="regalia-bench-automations-", dir=args.dir))
    (work / "server").mkdir()
    (work / "client").mkdir()
    scratch = ScratchDatabase(args.database_url) if args.database_url else None
    db = f"PostgreSQL (database {scratch.name})" if scratch else "SQLite (embedded)"
    rx = Receiver()
    rows: list[Row] = []
    server = Server(work / "server", 1, scratch.url if scratch else None, work / "server.log")
    server.env |= {
        "REGALIA_AUTOMATION_ALLOW_PRIVATE": "1",
        "REGALIA_AUTOMATION_WEBHOOK_RATE": "0",
        "REGALIA_AUTOMATION_WORKER": "0",
    }
    load_before = load()
    try:
        log(f"server without its worker ({db}) in {work}")
        server.start()
        set_client_environment(work / "client", server)
        bench = Bench(args, server, rx)
        bench.seed(work / "client", 50)
        log(f"alias changes, 0 and {AUTOMATIONS} automations, no worker")
        bench.latency_blocks("no worker", rows)
        log(f"worker throughput: {args.backlog} changes x {AUTOMATIONS} automations")
        bench.worker_throughput(work, rows)
        server.stop()

        log("server with its worker (the default)")
        server.env.pop("REGALIA_AUTOMATION_WORKER")
        server.start()
        ids = bench.ids
        bench = Bench(args, server, rx)  # the new port
        bench.ids = ids
        log(f"alias changes, 0 and {AUTOMATIONS} automations, worker sending")
        bench.latency_blocks("worker in the server", rows)
        log("the same, 10 changes per second")
        bench.latency_blocks("worker in the server, 10 changes/s", rows, per_second=10)
        log(f"end to end: {args.events} events")
        bench.end_to_end(rows)
    finally:
        server.stop()
        rx.server.shutdown()
        if scratch:
            scratch.drop()
    header = (
        f"Regalia automations bench: {db}; {os.cpu_count()} CPUs; load {load_before} -> {load()}"
    )
    print_table(rows, header)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
