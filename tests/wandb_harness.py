"""What the tests of the official `wandb` client share (issue 14).

Each pinned client release is installed from PyPI into a virtualenv of its own
(``.wandb-clients/<release>`` of the checkout, made once, under a lock), never
into Regalia's environment. Scripts run with that Python against a real
``regalia server`` on 127.0.0.1, with ``WANDB_MODE`` unset and a fresh
``HOME``/``WANDB_DIR``/``WANDB_CACHE_DIR`` per client, and the server records
what the client sent (``REGALIA_WANDB_TRACE``, read with :func:`trace`).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from servers import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / ".wandb-clients"
CURRENT = "0.31.0"  # the newest release tested
INTROSPECTING = "0.22.3"  # a release from before 0.26, which probes the schema
RELEASES = (CURRENT, INTROSPECTING)


def wandb_python(release: str = CURRENT) -> Path:
    """The Python of a virtualenv holding ``wandb==release`` (made once)."""
    venv = CLIENTS / release
    python = venv / "bin" / "python"
    CLIENTS.mkdir(exist_ok=True)
    with (CLIENTS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                + [f"wandb=={release}"],
                check=True,
                timeout=900,
            )
            (venv / ".installed").touch()
    return python


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A server's environment: its own REGALIA_HOME, a trace of the W&B routes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env["REGALIA_HOME"] = str(tmp_path / "regalia")
    env["REGALIA_WANDB_TRACE"] = str(tmp_path / "wandb-trace.jsonl")
    env |= extra
    return env


def start_server(tmp_path: Path, **extra: str) -> ServerProcess:
    """A started ``regalia server`` (use as a context manager to stop it)."""
    return ServerProcess(server_env(tmp_path, **extra), log=tmp_path / "server.log")


def trace(tmp_path: Path) -> list[dict[str, Any]]:
    """What the client sent so far: one dict per request (method, path,
    operation, status, auth)."""
    path = tmp_path / "wandb-trace.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def client_env(home: Path, server: ServerProcess, key: str | None, **extra: str) -> dict[str, str]:
    """The environment of one client machine: a fresh HOME and W&B folders."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "REGALIA_"))}
    env |= {
        "HOME": str(home),
        "WANDB_DIR": str(home),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_DATA_DIR": str(home / "data"),
        "WANDB_SILENT": "true",
        "WANDB_BASE_URL": server.url,
    }
    if key is not None:
        env["WANDB_API_KEY"] = key
    return env | extra


def run(
    python: Path,
    args: list[str],
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def run_script(
    python: Path, code: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with the client's Python in ``cwd``; the caller
    asserts on returncode/stdout/stderr."""
    script = cwd / "client_script.py"
    cwd.mkdir(parents=True, exist_ok=True)
    script.write_text(textwrap.dedent(code), encoding="utf-8")
    return run(python, [str(script)], env, cwd=cwd, timeout=timeout)
