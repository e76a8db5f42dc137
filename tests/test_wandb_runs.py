"""Runs of the official `wandb` client against `regalia server` (issue 14):
``wandb.init`` … ``run.finish()`` completes at once with both releases, and
Regalia keeps the run's record: display name, config, summary, state and exit
code, the console output's tail, and the run's files.

The client runs from its own virtualenv (see ``wandb_harness``) against a real
``regalia server`` process; the server's trace shows what the client sent.
The file stream's refusals are checked over plain HTTP, as the client would
meet them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from conftest import PG_ADMIN_URL
from servers import ServerProcess
from wandb_harness import RELEASES, run_script, start_server, trace
from wandb_harness import client_env as _client_env
from wandb_harness import wandb_python as _wandb_python

from regalia.config import Settings
from regalia.service import Service
from regalia.service.runs import RunView

RUN_SCRIPT = """
    import json
    import wandb
    run = wandb.init(entity="admin", project="runs-demo", name="first try",
                     config={"lr": 0.01}, tags=["baseline", "zoo"], group="sweep-1",
                     notes="first attempt")
    run.config.update({"epochs": 3})
    run.summary["accuracy"] = 0.93
    print("hello from the run")
    print("RUN", run.id, run.entity, run.project, run.dir)
    run.finish()
    kept = wandb.Api().run(f"admin/runs-demo/{run.id}")
    print("KEPT", json.dumps([kept.state, kept.config, kept.summary["accuracy"]]))
    print("LABELS", json.dumps([kept.tags, kept.group, kept.notes]))
"""

RUN_QUERY = """
query R($entity: String, $project: String, $run: String!) {
  project(name: $project, entityName: $entity) {
    run(name: $run) {
      id name displayName state config summaryMetrics logLineCount stopped
    }
  }
}
"""


@pytest.fixture(scope="session", params=RELEASES)
def wandb_python(request: pytest.FixtureRequest) -> Path:
    return _wandb_python(request.param)


@pytest.fixture
def server(tmp_path: Path):
    with start_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def own_database(db_kind: str) -> Iterator[str | None]:
    """A PostgreSQL database of the test's own (so the server's first start
    prints its admin key), or None for the server's embedded SQLite."""
    if db_kind == "sqlite":
        yield None
        return
    name = f"regalia_runs_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def server_on(tmp_path: Path, database_url: str | None) -> ServerProcess:
    return start_server(
        tmp_path, **({"REGALIA_DATABASE_URL": database_url} if database_url else {})
    )


def client_env(
    tmp_path: Path, server: ServerProcess, key: str | None, **extra: str
) -> dict[str, str]:
    return _client_env(tmp_path / "client", server, key, **extra)


def graphql(server: ServerProcess, key: str, query: str, **variables: Any) -> httpx.Response:
    return httpx.post(
        server.url + "/graphql",
        json={"query": query, "variables": variables},
        auth=("api", key),
        timeout=30,
    )


def kept_run(server: ServerProcess, run: str, project: str = "runs-demo") -> dict[str, Any]:
    answer = graphql(server, server.api_key, RUN_QUERY, entity="admin", project=project, run=run)
    assert answer.status_code == 200, answer.text
    found = answer.json()["data"]["project"]["run"]
    assert found is not None
    return dict(found)


def new_user(server: ServerProcess, name: str) -> str:
    made = httpx.post(
        server.url + "/api/v1/users",
        json={"name": name},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["api_key"])


def stored_run(
    server: ServerProcess, tmp_path: Path, run: str, database_url: str | None = None
) -> RunView:
    """The run as the server's store keeps it, files included."""
    settings = Settings.from_env(tmp_path / "regalia")
    if database_url is not None:
        settings = dataclasses.replace(settings, database_url=database_url)
    svc = Service(settings, migrate=False)
    try:
        actor = svc.authenticate(server.api_key)
        return svc.wandb_run(actor, "admin", "runs-demo", run, files=True)
    finally:
        svc.close()


def run_files(
    server: ServerProcess, tmp_path: Path, run: str, database_url: str | None = None
) -> dict[str, tuple[int, str]]:
    """What the server keeps of the run's files: name → (size, SHA-256)."""
    view = stored_run(server, tmp_path, run, database_url)
    return {f.name: (f.size, f.digest) for f in view.files}


def failures(tmp_path: Path) -> list[dict[str, Any]]:
    """Requests the server refused (the client's telemetry to /sdk/ aside)."""
    return [
        e
        for e in trace(tmp_path)
        if e.get("status", 200) >= 400 and not e["path"].startswith("/sdk/")
    ]


# -- the real client ---------------------------------------------------------------------


def test_a_run_starts_finishes_at_once_and_its_record_is_kept(wandb_python, own_database, tmp_path):
    url = own_database
    with server_on(tmp_path, url) as server:
        env = client_env(tmp_path, server, server.api_key)
        started = time.monotonic()
        done = run_script(wandb_python, RUN_SCRIPT, env, tmp_path / "work", timeout=90)
        took = time.monotonic() - started
        check_the_kept_run(server, tmp_path, done, took, url)


def check_the_kept_run(
    server: ServerProcess,
    tmp_path: Path,
    done: subprocess.CompletedProcess[str],
    took: float,
    database_url: str | None,
) -> None:
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RUN "))
    _, run_id, entity, project, run_dir = line.split()
    assert (entity, project) == ("admin", "runs-demo")

    assert failures(tmp_path) == []
    sent = trace(tmp_path)
    assert {"UpsertBucket", "CreateRunFiles"} <= {e.get("operation") for e in sent}
    streams = [e for e in sent if e["path"].endswith("/file_stream")]
    assert streams and all(e["auth"] for e in streams)
    assert {e["path"] for e in streams} == {f"/files/admin/runs-demo/{run_id}/file_stream"}
    puts = [e for e in sent if e["method"] == "PUT"]
    assert puts and not any(e["auth"] for e in puts)
    assert took < 60  # the benchmark measures the real time; this catches a retry loop
    kept = next(x for x in done.stdout.splitlines() if x.startswith("KEPT "))
    assert json.loads(kept.split(" ", 1)[1]) == ["finished", {"lr": 0.01, "epochs": 3}, 0.93]
    labels = next(x for x in done.stdout.splitlines() if x.startswith("LABELS "))
    assert json.loads(labels.split(" ", 1)[1]) == [["baseline", "zoo"], "sweep-1", "first attempt"]

    run = kept_run(server, run_id)
    assert run["name"] == run_id and run["displayName"] == "first try"
    assert run["state"] == "finished" and run["stopped"] is False
    config = json.loads(run["config"])
    assert config["lr"]["value"] == 0.01 and config["epochs"]["value"] == 3
    assert json.loads(run["summaryMetrics"])["accuracy"] == 0.93
    assert run["logLineCount"] >= 1

    files = run_files(server, tmp_path, run_id, database_url)
    assert {"config.yaml", "wandb-summary.json", "requirements.txt"} <= set(files)
    local = Path(run_dir) / "requirements.txt"
    assert files["requirements.txt"] == (
        local.stat().st_size,
        hashlib.sha256(local.read_bytes()).hexdigest(),
    )


def test_the_console_output_and_a_crash_are_kept(wandb_python, server, tmp_path):
    code = """
        import wandb
        run = wandb.init(entity="admin", project="runs-demo")
        print("RUN", run.id)
        for i in range(3):
            print(f"step {i} of the crashing run")
        run.finish(exit_code=3)
    """
    env = client_env(tmp_path, server, server.api_key, WANDB_X_FILE_STREAM_NO_GZIP="false")
    done = run_script(wandb_python, code, env, tmp_path / "work", timeout=90)
    assert done.returncode == 0, done.stderr
    run_id = next(x for x in done.stdout.splitlines() if x.startswith("RUN ")).split()[1]
    assert failures(tmp_path) == []
    view = stored_run(server, tmp_path, run_id)
    assert (view.state, view.exit_code) == ("crashed", 3)
    assert view.finished_at is not None and view.heartbeat_at is not None
    assert "step 2 of the crashing run" in view.output_tail
    assert view.output_lines >= 4


def test_a_resumed_run_continues_its_record(wandb_python, server, tmp_path):
    code = """
        import wandb
        run = wandb.init(entity="admin", project="runs-demo", id="resumable", config={"a": 1})
        print("before the restart")
        run.log({"loss": 1.0})
        run.finish(exit_code=1)
        run = wandb.init(entity="admin", project="runs-demo", id="resumable", resume="must",
                         config={"b": 2})
        print("after the restart")
        run.log({"loss": 0.5})
        run.finish()
        try:
            wandb.init(entity="admin", project="runs-demo", id="neverstarted", resume="must")
        except wandb.Error as exc:
            print("REFUSED", type(exc).__name__)
    """
    done = run_script(wandb_python, code, client_env(tmp_path, server, server.api_key), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "REFUSED UsageError" in done.stdout
    assert failures(tmp_path) == []
    view = stored_run(server, tmp_path, "resumable")
    assert (view.state, view.exit_code) == ("finished", 0)
    assert {k: v["value"] for k, v in view.config.items() if k != "_wandb"} == {"a": 1, "b": 2}
    assert view.summary["loss"] == 0.5 and view.summary["_step"] == 1
    before = view.output_tail.index("before the restart")
    assert view.output_tail.index("after the restart") > before


def test_a_runs_files_are_listed_and_downloaded_back(wandb_python, server, tmp_path):
    code = """
        import wandb
        run = wandb.init(entity="admin", project="runs-demo", id="withfiles")
        with open("notes.txt", "w") as f:
            f.write("kept notes\\n")
        wandb.save("notes.txt", policy="now")
        run.finish()
        kept = wandb.Api().run("admin/runs-demo/withfiles")
        print("NAMES", " ".join(sorted(f.name for f in kept.files())))
        print("NOTES", repr(kept.file("notes.txt").download(root="back", replace=True).read()))
    """
    done = run_script(wandb_python, code, client_env(tmp_path, server, server.api_key), tmp_path)
    assert done.returncode == 0, done.stderr
    names = next(x for x in done.stdout.splitlines() if x.startswith("NAMES ")).split()[1:]
    assert {"notes.txt", "config.yaml", "wandb-summary.json"} <= set(names)
    assert "NOTES 'kept notes\\n'" in done.stdout
    assert failures(tmp_path) == []
    assert [e for e in trace(tmp_path) if e["method"] == "GET"]  # the signed download URL


def test_a_runs_logged_and_used_artifacts_are_its_lineage(wandb_python, server, tmp_path):
    code = """
        import wandb
        open("model.pt", "wb").write(b"weights" * 100)
        run = wandb.init(entity="admin", project="runs-demo")
        art = wandb.Artifact("zoo_model", type="model")
        art.add_file("model.pt")
        run.link_artifact(art, "wandb-registry-model/Zoo_Models", aliases=["staging"])
        run.finish()
        user = wandb.init(entity="admin", project="runs-demo")
        user.use_artifact("wandb-registry-model/Zoo_Models:staging")
        user.finish()
        api = wandb.Api()
        logged = api.run(f"admin/runs-demo/{run.id}").logged_artifacts()
        used = api.run(f"admin/runs-demo/{user.id}").used_artifacts()
        print("LINEAGE", [a.name for a in logged], [a.name for a in used])
    """
    done = run_script(wandb_python, code, client_env(tmp_path, server, server.api_key), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "LINEAGE ['zoo_model:v0'] ['zoo_model:v0']" in done.stdout
    assert failures(tmp_path) == []


def test_a_user_who_may_not_log_into_the_entity_is_refused_at_once(wandb_python, server, tmp_path):
    key = new_user(server, "bob")
    code = """
        import wandb
        wandb.init(entity="admin", project="secret")
        print("STARTED")
    """
    started = time.monotonic()
    done = run_script(wandb_python, code, client_env(tmp_path, server, key), tmp_path / "work")
    assert done.returncode != 0 and "STARTED" not in done.stdout
    assert "you may not log runs in project admin/secret" in done.stderr
    assert time.monotonic() - started < 60
    refused = failures(tmp_path)
    assert [(e.get("operation"), e["status"]) for e in refused] == [("UpsertBucket", 403)]


# -- the file stream and run files over HTTP ---------------------------------------------

UPSERT = """
mutation U($entity: String, $project: String, $name: String, $config: JSONString) {
  upsertBucket(input: {entityName: $entity, modelName: $project, name: $name, config: $config}) {
    bucket { id name project { name entity { name } } }
    inserted
  }
}
"""

CREATE_RUN_FILES = """
mutation F($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run,
                         files: $files}) {
    runID uploadHeaders files { name uploadUrl }
  }
}
"""


def start_run(server: ServerProcess, name: str = "r1") -> str:
    answer = graphql(server, server.api_key, UPSERT, entity="admin", project="runs-demo", name=name)
    assert answer.status_code == 200, answer.text
    payload = answer.json()["data"]["upsertBucket"]
    assert payload["inserted"] is True
    assert payload["bucket"]["project"] == {"name": "runs-demo", "entity": {"name": "admin"}}
    return name


def stream(
    server: ServerProcess, run: str, body: bytes, key: str | None = None, **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/files/admin/runs-demo/{run}/file_stream",
        content=body,
        headers={"Content-Type": "application/json", **headers},
        auth=("api", key or server.api_key),
        timeout=30,
    )


def summary_of(value: dict[str, Any]) -> bytes:
    line = json.dumps(value)
    return json.dumps({"files": {"wandb-summary.json": {"offset": 0, "content": [line]}}}).encode()


def test_the_file_stream_takes_gzip_and_marks_the_end(server):
    run = start_run(server)
    assert (
        graphql(server, server.api_key, UPSERT, name=run, project="runs-demo").json()["data"][
            "upsertBucket"
        ]["inserted"]
        is False
    )
    packed = gzip.compress(summary_of({"loss": 0.5}))
    answer = stream(server, run, packed, **{"Content-Encoding": "gzip"})
    assert answer.status_code == 200 and answer.json() == {}
    assert json.loads(kept_run(server, run)["summaryMetrics"]) == {"loss": 0.5}
    end = stream(server, run, json.dumps({"complete": True, "exitcode": 2}).encode())
    assert end.status_code == 200
    assert kept_run(server, run)["state"] == "crashed"


def test_file_stream_refusals_are_4xx_that_say_why_and_write_nothing(server):
    run = start_run(server)
    assert stream(server, run, summary_of({"kept": 1})).status_code == 200

    wrong_key = stream(server, run, b"{}", key=server.api_key[:-1] + "x")
    assert wrong_key.status_code == 401
    not_json = stream(server, run, b"{")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]["message"]
    # A good summary beside a bad console chunk: the request is refused whole.
    half = {
        "files": {
            "wandb-summary.json": {"offset": 0, "content": [json.dumps({"kept": 2})]},
            "output.log": {"offset": -1, "content": ["x"]},
        }
    }
    bad = stream(server, run, json.dumps(half).encode())
    assert bad.status_code == 400 and "offset" in bad.json()["error"]["message"]
    bad_gzip = stream(server, run, b"not gzip", **{"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400 and "gzip" in bad_gzip.json()["error"]["message"]
    brotli = stream(server, run, b"{}", **{"Content-Encoding": "br"})
    assert brotli.status_code == 400 and "JSON or gzip" in brotli.json()["error"]["message"]
    bomb = gzip.compress(b" " * (20 * 1024 * 1024))
    too_big = stream(server, run, bomb, **{"Content-Encoding": "gzip"})
    assert too_big.status_code == 413 and "at most" in too_big.json()["error"]["message"]
    unknown = httpx.post(
        f"{server.url}/files/admin/runs-demo/nosuchrun/file_stream",
        content=b"{}",
        auth=("api", server.api_key),
        timeout=30,
    )
    assert unknown.status_code == 404 and "wandb.init" in unknown.json()["error"]["message"]
    assert json.loads(kept_run(server, run)["summaryMetrics"]) == {"kept": 1}
    assert kept_run(server, run)["state"] == "running"


def test_another_users_stream_and_files_are_refused_with_regalias_reason(server):
    run = start_run(server)
    bob = new_user(server, "bob")
    refused = stream(server, run, summary_of({"x": 1}), key=bob)
    assert refused.status_code == 403
    assert "you may not log runs in project admin/runs-demo" in refused.json()["error"]["message"]
    files = graphql(
        server, bob, CREATE_RUN_FILES, entity="admin", project="runs-demo", run=run, files=["a"]
    )
    assert files.status_code == 403 and "you may not" in files.json()["errors"][0]["message"]


def test_run_files_go_to_signed_urls_that_need_no_key(server, tmp_path):
    run = start_run(server)
    answer = graphql(
        server,
        server.api_key,
        CREATE_RUN_FILES,
        entity="admin",
        project="runs-demo",
        run=run,
        files=["config.yaml", "media/plot.txt"],
    )
    assert answer.status_code == 200, answer.text
    urls = {f["name"]: f["uploadUrl"] for f in answer.json()["data"]["createRunFiles"]["files"]}
    assert urls["config.yaml"].startswith(server.url + "/wandb/run-files/")
    body = b"lr: 0.01\n"
    put = httpx.put(urls["config.yaml"], content=body, timeout=30)
    assert put.status_code == 200
    big = bytes(range(256)) * (17 * 4096)  # 17 MiB: past the JSON body limit, a run file
    assert httpx.put(urls["config.yaml"], content=big, timeout=60).status_code == 200
    again = b"lr: 0.02\n"  # a file sent again replaces the kept one
    assert httpx.put(urls["config.yaml"], content=again, timeout=30).status_code == 200
    forged = httpx.put(urls["media/plot.txt"] + "x", content=b"x", timeout=30)
    assert forged.status_code == 403
    upload_url_read = httpx.get(urls["config.yaml"], timeout=30)  # an upload URL reads nothing
    assert upload_url_read.status_code == 403
    kept = run_files(server, tmp_path, run)
    assert kept == {"config.yaml": (len(again), hashlib.sha256(again).hexdigest())}
    listed = graphql(
        server,
        server.api_key,
        'query($r: String!) { project(name: "runs-demo", entityName: "admin") {'
        " run(name: $r) { fileCount files { edges { node { name sizeBytes directUrl } } } } } }",
        r=run,
    ).json()["data"]["project"]["run"]
    assert listed["fileCount"] == 1
    node = listed["files"]["edges"][0]["node"]
    assert (node["name"], node["sizeBytes"]) == ("config.yaml", len(again))
    assert httpx.get(node["directUrl"], timeout=30).content == again  # no credentials

    bad_name = graphql(
        server,
        server.api_key,
        CREATE_RUN_FILES,
        entity="admin",
        project="runs-demo",
        run=run,
        files=["ok.txt", "../escape"],
    )
    assert (
        bad_name.status_code == 400 and "relative path" in bad_name.json()["errors"][0]["message"]
    )


def test_a_config_that_is_not_a_json_object_is_refused(server):
    answer = graphql(
        server,
        server.api_key,
        UPSERT,
        entity="admin",
        project="runs-demo",
        name="r2",
        config="[1, 2]",
    )
    assert answer.status_code == 400
    assert "config is a JSON object" in answer.json()["errors"][0]["message"]
    missing = graphql(
        server, server.api_key, RUN_QUERY, entity="admin", project="runs-demo", run="r2"
    )
    assert missing.json()["data"]["project"]["run"] is None


def test_output_with_nul_and_lone_surrogates_is_kept_on_both_databases(own_database, tmp_path):
    """A console line may carry any character JSON can; PostgreSQL keeps no NUL
    and no lone surrogate, so they become U+FFFD (never a 500 the client would
    retry for days)."""
    url = own_database
    with server_on(tmp_path, url) as server:
        run = start_run(server)
        summary = json.dumps({"k\x00": "\udfff"})  # JSON escapes: \u0000, \udfff
        body = json.dumps(
            {
                "files": {
                    "output.log": {"offset": 0, "content": ["a\x00b \ud800 end"]},
                    "wandb-summary.json": {"offset": 0, "content": [summary]},
                }
            }
        )
        answer = stream(server, run, body.encode())
        assert answer.status_code == 200, answer.text
        kept = stored_run(server, tmp_path, run, url)
        assert kept.output_tail == "a\ufffdb \ufffd end\n"
        assert kept.summary == {"k\ufffd": "\ufffd"}
        assert json.loads(kept_run(server, run)["summaryMetrics"]) == {"k\ufffd": "\ufffd"}


def test_a_config_with_nan_and_a_lone_surrogate_is_kept_readable(server):
    config = '{"lr": {"value": NaN}, "tag": {"value": "\ud800"}}'
    variables = {"entity": "admin", "project": "runs-demo", "name": "r3", "config": config}
    answer = httpx.post(
        server.url + "/graphql",
        content=json.dumps({"query": UPSERT, "variables": variables}).encode(),  # ASCII escapes
        headers={"Content-Type": "application/json"},
        auth=("api", server.api_key),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    kept = json.loads(kept_run(server, "r3")["config"])
    assert kept == {"lr": {"value": None}, "tag": {"value": "\ufffd"}}


def test_the_console_tail_keeps_the_last_64_kib_and_redrawn_lines(server, tmp_path):
    run = start_run(server)
    lines = [f"line {i:05d} " + "x" * 90 for i in range(2000)]  # about 200 KB
    for start in range(0, 2000, 500):
        chunk = {"offset": start, "content": lines[start : start + 500]}
        sent = stream(server, run, json.dumps({"files": {"output.log": chunk}}).encode())
        assert sent.status_code == 200
    redraw = {"offset": 1999, "content": ["progress 100%"]}  # a progress bar redraws its line
    assert stream(server, run, json.dumps({"files": {"output.log": redraw}}).encode()).is_success
    kept = stored_run(server, tmp_path, run)
    assert kept.output_lines == 2000
    assert len(kept.output_tail.encode()) <= 64 * 1024
    assert kept.output_tail.endswith("line 01998 " + "x" * 90 + "\nprogress 100%\n")
    assert "line 00000" not in kept.output_tail
