"""Core figures of Regalia on the embedded default (SQLite + a local folder).

    .venv/bin/python bench/bench_core.py              # full run (1 GiB file, ~1-2 min)
    .venv/bin/python bench/bench_core.py --quick      # small N, 64 MiB file
    .venv/bin/python bench/bench_core.py --database-url postgresql://postgres@127.0.0.1/bench

Everything happens in a fresh temporary REGALIA_HOME (blobs, cache and, unless
``--database-url`` is given, the SQLite file), removed at the end. With
``--database-url`` the metadata goes to that database under a fresh
organization, so point it at a scratch database.

Measured, in this order:

* links/s: ``run.link_artifact`` of N distinct logged versions into one collection;
* alias moves/s: moving one alias across those links, through the SDK the W&B
  way (``Api().artifact(path)``, ``aliases.append``, ``save()``) and through
  ``Service.add_aliases``;
* ``Api().artifact("wandb-registry-model/coll:alias")`` latency on a warm ``Api``;
* logging a large random file (``Artifact.add_file`` + ``run.log_artifact``)
  against ``cp`` + ``fsync`` of the same file, and ``artifact.download(root=...)``
  against ``cp``; both sides read a file that is already in the page cache, each
  measurement is repeated 3 times and the median is kept.

This is a benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1 << 20
ALIAS = "champion"
ENTITY, PROJECT = "bench", "core"
TARGET = "wandb-registry-model/bench"


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
    p.add_argument("--database-url", help="run the metadata on this database (PostgreSQL)")
    p.add_argument("--links", type=int, help="versions to link (default 1000; quick 100)")
    p.add_argument("--moves", type=int, help="alias moves (default 2000; quick 200)")
    p.add_argument("--resolves", type=int, help="Api().artifact calls (default 2000; quick 200)")
    p.add_argument("--file-mib", type=int, help="size of the large file (default 1024; quick 64)")
    p.add_argument("--dir", help="where to make the temporary home (default: the system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary home")
    p.add_argument("--profile", metavar="FILE", help="write a cProfile of the transfers to FILE")
    p.add_argument("--repeats", type=int, default=3, help="repetitions per transfer (median)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every repetition")
    args = p.parse_args(argv)
    args.links = args.links or (100 if args.quick else 1000)
    args.moves = args.moves or (200 if args.quick else 2000)
    args.resolves = args.resolves or (200 if args.quick else 2000)
    args.file_mib = args.file_mib or (64 if args.quick else 1024)
    return args


def set_environment(home: Path, database_url: str | None) -> None:
    """Point the SDK at a fresh home (and org) before anything reads the settings."""
    os.environ["REGALIA_HOME"] = str(home)
    os.environ["REGALIA_CACHE_DIR"] = str(home / "cache")
    os.environ["REGALIA_ORG"] = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ["REGALIA_SILENT"] = "1"
    for name in ("REGALIA_API_KEY", "REGALIA_BLOB_DIR", "REGALIA_DATABASE_URL"):
        os.environ.pop(name, None)
    if database_url:
        os.environ["REGALIA_DATABASE_URL"] = database_url


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


# -- metadata figures ---------------------------------------------------------------------------
def bench_metadata(args: argparse.Namespace, work: Path, rows: list[Row]) -> None:
    import regalia
    from regalia.config import Settings
    from regalia.service import Service

    run = regalia.init(entity=ENTITY, project=PROJECT)
    small = work / "small"
    small.mkdir()
    drafts = []
    for i in range(args.links):
        path = small / f"f{i}.bin"
        path.write_bytes(f"version {i} {uuid.uuid4()}\n".encode())
        art = regalia.Artifact("src", type="model")
        art.add_file(path, name="model.bin")
        drafts.append(art)
    t = timed(lambda: [run.log_artifact(a) for a in drafts])
    rows.append(
        Row(
            "log small versions (SDK)",
            f"{args.links / t:,.0f} /s",
            note=f"N={args.links}; MLflow create version 38/s",
        )
    )

    links: list[regalia.Artifact] = []
    t = timed(lambda: links.extend(run.link_artifact(a, TARGET) for a in drafts))
    assert sorted(a.version for a in links) == sorted(f"v{i}" for i in range(args.links))
    rate = args.links / t
    rows.append(
        Row(
            "links into one collection (SDK)",
            f"{rate:,.0f} /s",
            goal=">= 400/s",
            ok=rate >= 400,
            note=f"N={args.links}; run.link_artifact",
        )
    )

    # Moves: consecutive targets always differ, so every call really moves the alias.
    count = len(links)
    api = regalia.Api()

    def sdk_moves() -> None:
        for i in range(args.moves):
            art = api.artifact(f"{TARGET}:v{i % count}")
            art.aliases.append(ALIAS)
            art.save()

    t = timed(sdk_moves)
    rate = args.moves / t
    rows.append(
        Row(
            "alias moves (SDK: artifact + save)",
            f"{rate:,.0f} /s",
            goal=">= 400/s",
            ok=rate >= 400,
            note=f"N={args.moves}; resolve + move each; MLflow move alias 13/s",
        )
    )

    service = Service(Settings.from_env())
    owner = service.ensure_org()
    ids = [int(a.id or 0) for a in links]

    def service_moves() -> None:
        for i in range(args.moves):
            service.add_aliases(owner, ids[(i + 1) % count], [ALIAS])

    t = timed(service_moves)
    rate = args.moves / t
    rows.append(
        Row(
            "alias moves (Service.add_aliases)",
            f"{rate:,.0f} /s",
            goal=">= 400/s",
            ok=rate >= 400,
            note=f"N={args.moves}",
        )
    )
    moves = service.history(owner, "model", "bench", alias=ALIAS, limit=1)
    assert moves.items and moves.items[0].alias == ALIAS
    service.close()

    path = f"{TARGET}:{ALIAS}"
    for _ in range(50):  # warm the Api object, the pool and the statement cache
        api.artifact(path)
    lat = []
    for _ in range(args.resolves):
        t0 = time.perf_counter_ns()
        api.artifact(path)
        lat.append((time.perf_counter_ns() - t0) / 1e6)
    rows.append(
        Row(
            "Api().artifact(coll:alias) median",
            f"{statistics.median(lat):.2f} ms",
            note=f"N={args.resolves}, warm Api; MLflow resolve 13.6 ms",
        )
    )
    rows.append(
        Row(
            "Api().artifact(coll:alias) p95",
            f"{percentile(lat, 0.95):.2f} ms",
            note=f"N={args.resolves}",
        )
    )


# -- transfer figures ---------------------------------------------------------------------------
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


def timed_download(artifact: Any, root: Path, size: int) -> float:
    settle()
    took = timed(lambda: artifact.download(root=root))
    assert (root / "big.bin").stat().st_size == size
    remove(root)
    return took


def bench_transfers(args: argparse.Namespace, work: Path, rows: list[Row]) -> dict[str, float]:
    import regalia
    from regalia.sdk.cache import ArtifactCache

    size = args.file_mib * MiB
    xfer = work / "xfer"
    xfer.mkdir()
    src = xfer / "random.bin"
    make_random_file(src, size)
    read_once(src)
    run = regalia.init(entity=ENTITY, project=PROJECT)
    api = regalia.Api()

    cp_sync, log = [], []
    for rep in range(args.repeats):
        dst = xfer / f"cp-{rep}.bin"
        settle()
        cp_sync.append(cp(src, dst, fsync=True))
        remove(dst)

        settle()
        art = regalia.Artifact(f"big-{rep}", type="model")
        log.append(
            timed(lambda art=art: (art.add_file(src, name="big.bin"), run.log_artifact(art)))
        )
        digest = art.files()[0].digest
        art.delete()  # frees the blob, so the next repetition stores it again (R9)
        assert not run._backend.service.blobs.has(digest), "the blob must be stored anew each time"

    logged = regalia.Artifact("big", type="model")
    logged.add_file(src, name="big.bin")
    run.log_artifact(logged)
    blob = run._backend.service.blobs.local_path(logged.files()[0].digest)
    assert blob is not None
    read_once(blob)
    artifact = api.artifact(f"{ENTITY}/{PROJECT}/big:latest")

    # The brief's measurement: consecutive downloads into new folders (the first one
    # fills the SDK cache). Then, for information, downloads with the cache emptied
    # first: what a first download after logging costs.
    sdk_cache = ArtifactCache(Path(os.environ["REGALIA_CACHE_DIR"]))
    sdk_cache.clean()
    cp_plain, download, first = [], [], []
    for rep in range(args.repeats):
        dst = xfer / f"cp-plain-{rep}.bin"
        settle()
        cp_plain.append(cp(src, dst, fsync=False))
        remove(dst)
        download.append(timed_download(artifact, xfer / f"download-{rep}", size))
    for rep in range(args.repeats):
        sdk_cache.clean()
        first.append(timed_download(artifact, xfer / f"first-{rep}", size))
    settle()

    samples = {
        "cp_sync": cp_sync,
        "log": log,
        "cp": cp_plain,
        "download": download,
        "first": first,
    }
    if args.verbose:
        for k, v in samples.items():
            print(f"{k:>10}: " + "  ".join(f"{x:.3f}" for x in v) + " s", file=sys.stderr)
    m = {k: statistics.median(v) for k, v in samples.items()}
    mb = size / 1e6

    def speed(name: str) -> str:
        return f"{m[name]:.2f} s ({mb / m[name]:,.0f} MB/s)"

    label = f"{args.file_mib} MiB" if args.file_mib < 1024 else f"{args.file_mib // 1024} GiB"
    up, down, cold = m["log"] / m["cp_sync"], m["download"] / m["cp"], m["first"] / m["cp"]
    rows += [
        Row(
            f"log {label} / (cp + fsync)",
            f"{up:.2f}",
            "<= 1.25",
            up <= 1.25,
            note=f"log {speed('log')}, cp+fsync {speed('cp_sync')}",
        ),
        Row(
            f"download {label} / cp",
            f"{down:.2f}",
            "<= 1.5",
            down <= 1.5,
            note=f"download {speed('download')}, cp {speed('cp')}",
        ),
        Row(
            "  same, SDK cache emptied before each",
            f"{cold:.2f}",
            "(<= 1.5)",
            None,
            note=f"download {speed('first')}; for information",
        ),
    ]
    return m


# -- output -------------------------------------------------------------------------------------
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
    work = Path(tempfile.mkdtemp(prefix="regalia-bench-", dir=args.dir))
    set_environment(work / "home", args.database_url)
    db = "PostgreSQL" if args.database_url else "SQLite (embedded)"
    header = (
        f"regalia bench_core: {db} + local blobs in {work}\n"
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"{'quick' if args.quick else 'full'} run, load average {load()}"
    )
    rows: list[Row] = []
    try:
        bench_metadata(args, work, rows)
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.runcall(bench_transfers, args, work, rows)
            prof.dump_stats(args.profile)
        else:
            bench_transfers(args, work, rows)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, header + f" (at the end: {load()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
