"""The official `wandb` client moving a large file through ``regalia server``,
against ``cp`` of the same file (issue 14: within 2x of ``cp``).

    .venv/bin/python bench/bench_wandb_transfer.py                  # 1 GiB
    .venv/bin/python bench/bench_wandb_transfer.py --size-gib 0.25  # quicker

Everything happens in a scratch folder under /tmp, removed at the end: the
server's REGALIA_HOME, the client's homes, the file and its copies. The client
is the newest tested release, from its own virtualenv (``tests/wandb_harness``).

Measured, each in a fresh client process, timed inside it:

* ``cp`` of the file, then ``fsync`` (what an upload must at least do: read
  it, write it where it is kept);
* log: ``run.log_artifact`` of an artifact holding the file, then
  ``artifact.wait()`` (the client hashes it with MD5, asks for upload URLs, PUTs
  the bytes; the server hashes them again, SHA-256, BLAKE3 and MD5, and stores
  them); ``wandb.init`` and ``run.finish()`` are timed apart;
* download with an empty cache: ``Api().artifact(...).download(root)`` from a
  client home that has never seen the file (the client verifies MD5);
* ``cp`` of the file to a new folder (the download's baseline);
* the client's floor, with no server at all: what ``Artifact.add_file`` does
  before a byte is sent under its default policy (``mutable``), an MD5 of the
  file and a copy of it into the client's staging folder. A log through any
  server costs at least this plus the upload, so it shows what part of the
  2x-of-``cp`` budget is the client's own.

This is a benchmark, not a test: it prints figures and never fails on them
(it exits non-zero only if a copy differs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench_transfer import GiB, Server, make_file, sync  # noqa: E402
from wandb_harness import CURRENT, client_env, wandb_python  # noqa: E402

LOG = """
import json, sys, time
import wandb
t0 = time.perf_counter()
run = wandb.init(entity="bench", project="transfer")
t1 = time.perf_counter()
art = wandb.Artifact("big", type="model")
art.add_file(sys.argv[1], name="big.bin")
ta = time.perf_counter()
run.log_artifact(art)
art.wait()
t2 = time.perf_counter()
run.finish()
t3 = time.perf_counter()
print(json.dumps({"init": t1 - t0, "add_file": ta - t1, "log": t2 - t1, "finish": t3 - t2}))
"""

DOWNLOAD = """
import json, sys, time
import wandb
t0 = time.perf_counter()
art = wandb.Api().artifact("bench/transfer/big:latest")
path = art.download(root=sys.argv[1])
print(json.dumps({"download": time.perf_counter() - t0}))
"""


def cp(src: Path, dst: Path, fsync: bool) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    if fsync:
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - t0


def client_floor(src: Path, copy: Path) -> float:
    """MD5 of the file, then a copy of it: what ``add_file`` does locally."""
    t0 = time.perf_counter()
    md5 = hashlib.md5()
    with src.open("rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
    shutil.copyfile(src, copy)
    return time.perf_counter() - t0


def client(python: Path, code: str, args: list[str], env: dict[str, str], cwd: Path) -> dict:
    script = cwd / "bench_client.py"
    script.write_text(code)
    done = subprocess.run(
        [str(python), str(script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"the wandb client failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=1.0)
    args = p.parse_args(argv)
    size = int(args.size_gib * GiB)
    python = wandb_python(CURRENT)
    scratch = Path(tempfile.mkdtemp(prefix="regalia-bench-wandb-"))
    server = Server(scratch / "server", scratch / "server.log", None)
    try:
        src = scratch / "big.bin"
        digest = make_file(src, size, seed=7)
        sync()
        cp_up = cp(src, scratch / "cp-up.bin", fsync=True)
        sync()
        up_env = client_env(scratch / "up", server, server.key)
        logged = client(python, LOG, [str(src)], up_env, scratch / "up")
        sync()
        down_env = client_env(scratch / "down", server, server.key)
        got = client(python, DOWNLOAD, [str(scratch / "out")], down_env, scratch / "down")
        with (scratch / "out" / "big.bin").open("rb") as f:
            same = hashlib.file_digest(f, "sha256").hexdigest() == digest
        sync()
        cp_down = cp(src, scratch / "cp-down.bin", fsync=False)
        sync()
        floor = client_floor(src, scratch / "staged.bin")
        mib = size / (1 << 20)
        print(f"wandb {CURRENT} client, {args.size_gib:g} GiB file, regalia server on SQLite")
        print(f"  cp + fsync                 {cp_up:7.2f} s  {mib / cp_up:7.0f} MiB/s")
        print(
            f"  log_artifact + wait        {logged['log']:7.2f} s  {mib / logged['log']:7.0f} MiB/s"
            f"  = {logged['log'] / cp_up:.2f}x cp + fsync"
        )
        print(
            f"    of which add_file {logged['add_file']:.2f} s (the client hashes and stages"
            f" the file), upload + commit {logged['log'] - logged['add_file']:.2f} s"
        )
        print(
            f"  client floor (MD5 + staging copy, no server) {floor:.2f} s"
            f"  = {floor / cp_up:.2f}x cp + fsync"
        )
        print(f"  wandb.init {logged['init']:.2f} s, run.finish() {logged['finish']:.2f} s")
        print(f"  cp                         {cp_down:7.2f} s  {mib / cp_down:7.0f} MiB/s")
        print(
            f"  download (empty cache)     {got['download']:7.2f} s"
            f"  {mib / got['download']:7.0f} MiB/s  = {got['download'] / cp_down:.2f}x cp"
        )
        print(f"  downloaded copy identical: {same}")
        return 0 if same else 1
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
