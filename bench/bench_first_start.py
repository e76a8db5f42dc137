"""The first start of ``scripts/serve`` on a fresh machine, timed.

A clean clone of this checkout (``git clone``, so only committed files), no
virtualenv and an empty pip cache (``PIP_NO_CACHE_DIR=1``, a fresh
``XDG_CACHE_HOME``), a fresh ``REGALIA_HOME``; then ``bash scripts/serve
--port P`` until ``/healthz`` answers. Prints the time to the first answer, and
how it splits between installing (until the virtualenv's install stamp
appears) and starting the server::

    .venv/bin/python bench/bench_first_start.py            # 3 runs, median
    .venv/bin/python bench/bench_first_start.py --runs 1

It measures whatever package index pip is configured with (``pip config
list``); on a machine with a slower index the install part grows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def one_run(scratch: Path) -> tuple[float, float]:
    """(seconds to the first /healthz answer, seconds until the install finished)."""
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGALIA_", "VIRTUAL_ENV"))}
    env |= {
        "REGALIA_HOME": str(scratch / "home"),
        "PIP_NO_CACHE_DIR": "1",
        "XDG_CACHE_HOME": str(scratch / "cache"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "scripts/serve", "--port", str(port)],
        cwd=clone,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    stamp = clone / ".venv" / ".regalia-installed-runtime"
    install = float("nan")
    try:
        while not healthy(f"http://127.0.0.1:{port}/healthz"):
            if install != install and stamp.exists():
                install = time.monotonic() - started
            if proc.poll() is not None:
                raise SystemExit(f"scripts/serve exited with {proc.returncode}")
            if time.monotonic() - started > DEADLINE:
                raise SystemExit(f"no answer within {DEADLINE:.0f} s")
            time.sleep(0.05)
        total = time.monotonic() - started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return total, install


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    totals, installs = [], []
    for i in range(args.runs):
        scratch = Path(tempfile.mkdtemp(prefix="regalia-first-start-"))
        try:
            total, install = one_run(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        totals.append(total)
        installs.append(install)
        print(
            f"run {i + 1}: first answer after {total:.1f} s "
            f"(install {install:.1f} s, then start {total - install:.1f} s)"
        )
    print(
        f"first start of scripts/serve, median of {args.runs}: {statistics.median(totals):.1f} s "
        f"(goal < 20 s); load average {os.getloadavg()[0]:.2f}",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
