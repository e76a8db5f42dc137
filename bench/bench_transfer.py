"""Transfer figures of a real ``regalia server``: a large file up and down
through the SDK over HTTP, the server's memory while it happens, and a
resumable upload killed halfway.

    .venv/bin/python bench/bench_transfer.py                  # 3 GiB (needs ~13 GiB free)
    .venv/bin/python bench/bench_transfer.py --size-gib 0.5   # quicker

Everything happens in a scratch folder (``--dir``, default a fresh folder
under /tmp) removed at the end: the server's REGALIA_HOME (SQLite, blobs,
upload area), the client's home (download cache), the source file and the
downloaded copy.

Measured, in this order:

* the server at rest after start (idle RSS);
* ``Artifact.add_file`` + ``run.log_artifact`` of a fresh file of ``--size-gib``
  (the client hashes it, asks which contents are missing, sends it as a
  resumable upload in parallel parts; the server re-hashes it on complete);
* ``Api().artifact(...).download(root=new folder)`` (streamed through the
  client's cache, verified by BLAKE3), then the copy's SHA-256 is compared;
* ``GET /healthz`` latency every 100 ms meanwhile (does a transfer stall the
  server's event loop?);
* a second, different file of the same size uploaded by a client process that
  is SIGKILLed once about half of its parts arrived; a new client then
  uploads it again and we count the parts it sends.

A sampler thread records the RSS of the server (with any children) and of this
client process every 50 ms. This is a benchmark, not a test: it prints figures
and never fails on them (it exits non-zero only if a transfer is wrong).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

MB = 1_000_000
MiB = 1 << 20
GiB = 1 << 30
WRITE_CHUNK = 16 * MiB


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=3.0, help="file size in GiB (default 3)")
    p.add_argument("--dir", type=Path, default=None, help="scratch folder (default under /tmp)")
    p.add_argument(
        "--part-mib", type=int, default=None, help="server part size (default: the server's)"
    )
    p.add_argument("--no-kill", action="store_true", help="skip the killed-halfway upload")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return p.parse_args(argv)


# -- memory sampling ---------------------------------------------------------------------
@dataclass
class Sampler:
    """RSS of the server (and its children) and of this process, every ``every`` s."""

    server_pid: int
    every: float = 0.05
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, server, client)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Sampler:
        self.server = psutil.Process(self.server_pid)
        self.me = psutil.Process()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _rss(self, proc: psutil.Process) -> int:
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._rss(self.server), self._rss(self.me)))
            except psutil.Error:
                return
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(2)

    def window(self, start: float, end: float) -> list[tuple[float, int, int]]:
        return [s for s in self.samples if start <= s[0] <= end]

    def peak(self, start: float, end: float, which: int) -> int:
        return max((s[which] for s in self.window(start, end)), default=0)

    def median(self, start: float, end: float, which: int) -> int:
        values = sorted(s[which] for s in self.window(start, end))
        return values[len(values) // 2] if values else 0


class Prober:
    """``GET /healthz`` every ``every`` s on its own connection: how long the server
    takes to answer a trivial request while a transfer runs."""

    def __init__(self, url: str, every: float = 0.1) -> None:
        import httpx

        self.client = httpx.Client(base_url=url, timeout=60)
        self.every = every
        self.samples: list[tuple[float, float]] = []  # (t, seconds)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            with contextlib.suppress(Exception):  # a failed probe counts as slow as it was
                self.client.get("/healthz")
            self.samples.append((t0, time.monotonic() - t0))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.client.close()

    def summary(self, start: float, end: float) -> str:
        values = sorted(v for t, v in self.samples if start <= t <= end)
        if not values:
            return "no sample"
        p50 = values[len(values) // 2] * 1000
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))] * 1000
        return f"p50 {p50:.1f} ms, p99 {p99:.0f} ms, max {values[-1] * 1000:.0f} ms"


def server_seconds(url: str, route_suffix: str) -> float:
    """Total time the server spent on POST requests to routes ending with
    ``route_suffix`` (from its Prometheus histogram)."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("regalia_http_request_duration_seconds_sum{") and (
            'method="POST"' in line and re.search(f'route="[^"]*{re.escape(route_suffix)}"', line)
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- the server ----------------------------------------------------------------------------
class Server:
    def __init__(self, home: Path, log: Path, part_bytes: int | None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
        env["REGALIA_HOME"] = str(home)
        if part_bytes:
            env["REGALIA_UPLOAD_PART_BYTES"] = str(part_bytes)
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "regalia", "server", "--port", "0", "--log-level", "warning"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        text = ""
        deadline = time.monotonic() + 60
        while "Regalia server on" not in text:
            line = self.proc.stdout.readline().decode()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not start:\n{text}\n{log.read_text()[-2000:]}")
            text += line
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        banner = text.split("Regalia server on", 1)[1]
        found_url = re.search(r"http://[\w.\[\]:]+:\d+", banner)
        found_key = re.search(r"\b(rg_[A-Za-z0-9_-]+)", text)
        if not found_url or not found_key:
            self.stop()
            raise SystemExit(f"cannot read the URL and the admin key from:\n{text}")
        self.url = found_url.group(0)
        self.key = found_key.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


# -- files ---------------------------------------------------------------------------------
def make_file(path: Path, size: int, seed: int) -> str:
    """Write ``size`` random-looking bytes fast (one random block, each copy made
    distinct by a counter); return their SHA-256."""
    block = bytearray(os.urandom(WRITE_CHUNK))
    hasher = hashlib.sha256()
    written = 0
    with path.open("wb") as f:
        i = 0
        while written < size:
            block[:16] = seed.to_bytes(8, "little") + i.to_bytes(8, "little")
            piece = memoryview(block)[: min(WRITE_CHUNK, size - written)]
            f.write(piece)
            hasher.update(piece)
            written += len(piece)
            i += 1
    return hasher.hexdigest()


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sync() -> None:
    """Write dirty pages back, so that one phase's writes do not slow the next."""
    os.sync()


# -- the killed-halfway upload -------------------------------------------------------------
KILLED_CLIENT = """
import sys
from pathlib import Path
from regalia.config import Settings
from regalia.sdk.http import HttpBackend
backend = HttpBackend(sys.argv[1], sys.argv[2], settings=Settings.from_env())
backend.store_file(Path(sys.argv[3]))
print("finished before the kill", flush=True)
"""


def killed_upload(server: Server, path: Path, digest: str, client_home: Path) -> dict[str, Any]:
    import httpx

    from regalia.config import Settings
    from regalia.sdk.http import HttpBackend

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env.update(REGALIA_HOME=str(client_home / "killed"), REGALIA_SILENT="1")
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, server.url, server.key, str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    headers = {"Authorization": f"Bearer {server.key}"}
    state: dict[str, Any] = {}
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        try:
            while proc.poll() is None:
                r = http.get(f"/uploads/{digest}")
                if r.status_code == 200:
                    state = r.json()
                    if len(state["parts_received"]) * 2 >= state["part_count"]:
                        os.kill(proc.pid, signal.SIGKILL)
                        break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        killed_after = time.monotonic() - started
        if proc.returncode != -signal.SIGKILL:
            raise SystemExit(f"the client was not killed: {out.decode()} {err.decode()}")
        time.sleep(0.5)  # let the server finish what arrived before the kill
        r = http.get(f"/uploads/{digest}")
        if r.status_code == 404:
            raise SystemExit(
                "every part arrived before the kill (too few parts): use a larger "
                "--size-gib or a smaller --part-mib"
            )
        state = r.json()

    sent: list[int] = []
    lock = threading.Lock()

    def on_request(request: httpx.Request) -> None:
        if request.method == "PUT" and "/parts/" in request.url.path:
            with lock:
                sent.append(int(request.url.path.rsplit("/", 1)[1]))

    os.environ["REGALIA_HOME"] = str(client_home / "retry")
    backend = HttpBackend(server.url, server.key, settings=Settings.from_env())
    backend.client.event_hooks = {"request": [on_request]}
    t0 = time.monotonic()
    blob = backend.store_file(path)
    retry_s = time.monotonic() - t0
    backend.close()
    if blob.digest != digest:
        raise SystemExit("the retried upload stored another content")
    received = set(state["parts_received"])
    resent_done = sorted(set(sent) & received)
    return {
        "part_count": state["part_count"],
        "part_size": state["part_size"],
        "received_before": len(received),
        "sent_by_retry": len(sent),
        "resent_done": resent_done,
        "killed_after_s": killed_after,
        "retry_s": retry_s,
    }


# -- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = int(args.size_gib * GiB)
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="regalia-bench-transfer-", dir=args.dir or "/tmp"))
    need = size * (4 if args.no_kill else 6) + GiB
    free = shutil.disk_usage(scratch).free
    if free < need:
        shutil.rmtree(scratch, ignore_errors=True)
        raise SystemExit(f"{free / GiB:.1f} GiB free under {scratch}; {need / GiB:.1f} needed")
    server: Server | None = None
    sampler: Sampler | None = None
    prober: Prober | None = None
    failed = False
    try:
        server_home, client_home = scratch / "server", scratch / "client"
        client_home.mkdir()
        part = args.part_mib * MiB if args.part_mib else None
        t_start = time.monotonic()
        server = Server(server_home, scratch / "server.log", part)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{os.cpu_count()} CPUs, load average {load}")
        print(
            f"server {server.url} (pid {server.proc.pid}) started in "
            f"{time.monotonic() - t_start:.2f} s; scratch {scratch}"
        )
        sampler = Sampler(server.proc.pid).start()
        prober = Prober(server.url)

        # The SDK reads its settings from the environment.
        os.environ.update(
            REGALIA_BASE_URL=server.url,
            REGALIA_API_KEY=server.key,
            REGALIA_HOME=str(client_home),
            REGALIA_SILENT="1",
        )
        for name in ("REGALIA_DATABASE_URL", "REGALIA_BLOB_DIR", "REGALIA_CACHE_DIR"):
            os.environ.pop(name, None)
        import regalia

        src = scratch / "model.bin"
        t0 = time.monotonic()
        digest = make_file(src, size, seed=1)
        sync()
        wrote = time.monotonic() - t0
        print(f"file written and synced in {wrote:.1f} s ({size / MB / wrote:.0f} MB/s)")
        time.sleep(1.0)
        idle_end = time.monotonic()
        idle_rss = sampler.median(idle_end - 1.0, idle_end, 1)

        # Upload.
        up0 = time.monotonic()
        run = regalia.init(project="bench")
        art = regalia.Artifact("big", type="model")
        art.add_file(str(src), name="model.bin")
        run.log_artifact(art)
        up1 = time.monotonic()
        complete_s = server_seconds(server.url, "/complete")
        sync()
        # Download into a new folder, through an empty cache.
        dl_root = scratch / "out"
        dl0 = time.monotonic()
        got = regalia.Api().artifact(f"{run.entity}/bench/big:latest")
        got.download(root=str(dl_root))
        dl1 = time.monotonic()
        ok = sha256_of(dl_root / "model.bin") == digest
        failed |= not ok
        time.sleep(1.0)
        after = time.monotonic()
        idle_after = sampler.median(after - 1.0, after, 1)
        from regalia.sdk.transfer import hash_local

        h0 = time.monotonic()
        hash_local(src)
        hash_s = time.monotonic() - h0

        rows = [
            ("size", f"{size / GiB:.2f} GiB ({size / MB:,.0f} MB)"),
            ("upload (log_artifact)", f"{up1 - up0:.1f} s, {size / MB / (up1 - up0):.0f} MB/s"),
            ("  of which client hashing", f"~{hash_s:.1f} s (hash_local alone, warm cache)"),
            ("  of which server complete", f"{complete_s:.1f} s (re-hash + store)"),
            ("download (download())", f"{dl1 - dl0:.1f} s, {size / MB / (dl1 - dl0):.0f} MB/s"),
            ("downloaded copy", "identical (SHA-256)" if ok else "DIFFERENT"),
            ("server idle RSS", f"{idle_rss / MB:.0f} MB at start, {idle_after / MB:.0f} MB after"),
            ("server peak RSS, upload", f"{sampler.peak(up0, up1, 1) / MB:.0f} MB"),
            ("server peak RSS, download", f"{sampler.peak(dl0, dl1, 1) / MB:.0f} MB"),
            ("client peak RSS, upload", f"{sampler.peak(up0, up1, 2) / MB:.0f} MB"),
            ("client peak RSS, download", f"{sampler.peak(dl0, dl1, 2) / MB:.0f} MB"),
            ("/healthz latency, idle", prober.summary(idle_end - 1.0, idle_end)),
            ("/healthz latency, upload", prober.summary(up0, up1)),
            ("/healthz latency, download", prober.summary(dl0, dl1)),
        ]

        if not args.no_kill:
            # Free the first round's copies; the server keeps its blob.
            shutil.rmtree(dl_root)
            shutil.rmtree(client_home / "cache", ignore_errors=True)
            src.unlink()
            t0 = time.monotonic()
            digest2 = make_file(src, size, seed=2)
            sync()
            print(f"second file written in {time.monotonic() - t0:.1f} s")
            k0 = time.monotonic()
            k = killed_upload(server, src, digest2, client_home)
            k1 = time.monotonic()
            failed |= bool(k["resent_done"])
            rows += [
                ("killed upload: part size", f"{k['part_size'] / MiB:.0f} MiB"),
                (
                    "killed upload: parts",
                    f"{k['received_before']}/{k['part_count']} arrived before SIGKILL "
                    f"(after {k['killed_after_s']:.1f} s, hashing included)",
                ),
                (
                    "killed upload: retry",
                    f"sent {k['sent_by_retry']} of {k['part_count']} parts "
                    f"({len(k['resent_done'])} already received), {k['retry_s']:.1f} s",
                ),
                ("server peak RSS, killed + retry", f"{sampler.peak(k0, k1, 1) / MB:.0f} MB"),
            ]

        sampler.stop()
        width = max(len(r[0]) for r in rows)
        print()
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
    finally:
        if sampler is not None:
            sampler.stop()
        if prober is not None:
            prober.stop()
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
