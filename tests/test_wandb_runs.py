"""Runs of the official `wandb` client against `regalia server` (issue 14):
``wandb.init`` … ``run.finish()`` completes at once, both releases, and
Regalia keeps the run's record.

The client runs from its own virtualenv (see ``wandb_harness``) against a real
``regalia server`` process; the server's trace shows what the client sent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from servers import ServerProcess
from wandb_harness import RELEASES, run_script, start_server, trace
from wandb_harness import client_env as _client_env
from wandb_harness import wandb_python as _wandb_python

RUN_SCRIPT = """
    import wandb
    run = wandb.init(entity="admin", project="runs-demo", name="first try",
                     config={"lr": 0.01})
    run.config.update({"epochs": 3})
    run.summary["accuracy"] = 0.93
    print("hello from the run")
    print("RUN", run.id, run.entity, run.project)
    run.finish()
"""


@pytest.fixture(scope="session", params=RELEASES)
def wandb_python(request: pytest.FixtureRequest) -> Path:
    return _wandb_python(request.param)


@pytest.fixture
def server(tmp_path: Path):
    with start_server(tmp_path) as srv:
        yield srv


def client_env(tmp_path: Path, server: ServerProcess, key: str | None) -> dict[str, str]:
    return _client_env(tmp_path / "client", server, key)


def test_a_run_starts_and_finishes_at_once_without_errors(wandb_python, server, tmp_path):
    env = client_env(tmp_path, server, server.api_key)
    started = time.monotonic()
    done = run_script(wandb_python, RUN_SCRIPT, env, tmp_path / "work", timeout=90)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RUN "))
    _, run_id, entity, project = line.split()
    assert (entity, project) == ("admin", "runs-demo")
    sent = trace(tmp_path)
    failed = [e for e in sent if e.get("status", 200) >= 400 and not e["path"].startswith("/sdk/")]
    assert failed == []
    operations = {e.get("operation") for e in sent}
    assert {"UpsertBucket", "CreateRunFiles"} <= operations
    streams = [e for e in sent if e["path"].endswith("/file_stream")]
    assert streams and all(e["auth"] for e in streams)
    assert streams[0]["path"] == f"/files/admin/runs-demo/{run_id}/file_stream"
    puts = [e for e in sent if e["method"] == "PUT"]
    assert puts and not any(e["auth"] for e in puts)
    assert took < 60  # the real bound is the benchmark's; this catches a retry loop
