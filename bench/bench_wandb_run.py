"""How long the official `wandb` client's ``wandb.init`` + ``run.finish()``
take against ``regalia server`` (issue 14: a run must not wait on retries).

    .venv/bin/python bench/bench_wandb_run.py             # 5 runs per release
    .venv/bin/python bench/bench_wandb_run.py --runs 3

A real ``regalia server`` (SQLite, a scratch REGALIA_HOME under /tmp, removed
at the end) and each tested client release from its own virtualenv
(``tests/wandb_harness``). Measured:

* the server's first GraphQL answer after it started (the schema is built as
  the server starts, off its event loop), then a warm one;
* per release, ``--runs`` runs, each in a fresh client process with a fresh
  home: ``wandb.init(entity, project)``, ``run.config.update``, a summary
  value, a ``print``, ``run.finish()``, timed inside the process (init, finish,
  both) and from outside (the whole process, ``import wandb`` included).
  Medians are printed, with the slowest run.

This is a benchmark, not a test: it prints figures and never fails on them
(it exits non-zero only if a client run fails).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench_transfer import Server  # noqa: E402
from wandb_harness import RELEASES, client_env, wandb_python  # noqa: E402

RUN = """
import json, time
import wandb
t0 = time.perf_counter()
run = wandb.init(entity="bench", project="runs")
t1 = time.perf_counter()
run.config.update({"lr": 0.01, "epochs": 3})
run.summary["accuracy"] = 0.93
print("hello from the run")
t2 = time.perf_counter()
run.finish()
t3 = time.perf_counter()
print(json.dumps({"init": t1 - t0, "finish": t3 - t2}))
"""


def graphql_ms(url: str, key: str) -> float:
    t0 = time.perf_counter()
    answer = httpx.post(
        url + "/graphql", json={"query": "{ viewer { id } }"}, auth=("api", key), timeout=60
    )
    answer.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def one_run(python: Path, env: dict[str, str], cwd: Path) -> dict[str, float]:
    cwd.mkdir(parents=True, exist_ok=True)
    script = cwd / "bench_run.py"
    script.write_text(RUN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(python), str(script)], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"the wandb client failed:\n{done.stderr[-3000:]}")
    times = json.loads(done.stdout.strip().splitlines()[-1])
    return {**times, "both": times["init"] + times["finish"], "process": wall}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="runs per client release (1-50)")
    args = p.parse_args(argv)
    runs = max(1, min(args.runs, 50))
    pythons = {release: wandb_python(release) for release in RELEASES}
    scratch = Path(tempfile.mkdtemp(prefix="regalia-bench-wandb-run-"))
    server = Server(scratch / "server", scratch / "server.log", None)
    try:
        cold = graphql_ms(server.url, server.key)
        warm = statistics.median(graphql_ms(server.url, server.key) for _ in range(5))
        print(f"regalia server on SQLite, {runs} runs per client release")
        print(f"  first GraphQL answer after start {cold:7.1f} ms")
        print(f"  warm GraphQL answer (median)     {warm:7.1f} ms")
        print(
            f"  {'release':8} {'init':>8} {'finish':>8} {'init+finish':>12} {'slowest':>8}"
            f" {'process':>8}"
        )
        for release, python in pythons.items():
            got = [
                one_run(python, client_env(scratch / f"{release}-{i}", server, server.key), scratch)
                for i in range(runs)
            ]

            def med(key: str, got: list[dict[str, float]] = got) -> float:
                return statistics.median(g[key] for g in got)

            slowest = max(g["both"] for g in got)
            print(
                f"  {release:8} {med('init'):7.2f}s {med('finish'):7.2f}s {med('both'):11.2f}s"
                f" {slowest:7.2f}s {med('process'):7.2f}s"
            )
        return 0
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
