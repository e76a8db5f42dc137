"""``regalia server`` as an operator meets it: first start, probes, metrics,
docs, logs, several workers, graceful shutdown, and ``regalia login``."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from servers import ServerProcess

from regalia.cli.main import cli


@pytest.fixture
def server_env(settings, tmp_path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("REGALIA_") or k == "REGALIA_SILENT"
    }
    env.update(
        REGALIA_HOME=str(settings.home),
        REGALIA_DATABASE_URL=settings.database_url,
        REGALIA_ORG=settings.org_name,
    )
    return env


def test_first_start_creates_the_org_and_shows_the_admin_key_once(server_env, tmp_path):
    with ServerProcess(server_env, log=tmp_path / "first.log") as server:
        assert server.api_key is not None
        me = httpx.get(
            server.url + "/api/v1/viewer", headers={"Authorization": f"Bearer {server.api_key}"}
        ).json()
        assert (me["name"], me["org_role"], me["org_name"]) == (
            "admin",
            "admin",
            server_env["REGALIA_ORG"],
        )
        registries = httpx.get(server.url + "/api/v1/registries", auth=("api", server.api_key))
        assert sorted(r["name"] for r in registries.json()) == ["dataset", "model"]
    with ServerProcess(server_env, log=tmp_path / "second.log") as again:
        assert again.api_key is None  # shown once: the second start says how to get another
        ok = httpx.get(again.url + "/api/v1/viewer", auth=("api", server.api_key))
        assert ok.status_code == 200


def test_probes_metrics_docs_and_json_logs(server_env, tmp_path):
    log = tmp_path / "server.log"
    env = dict(server_env)
    with ServerProcess(env, log=log, log_level="info") as server:
        key = server.api_key
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        httpx.get(server.url + "/api/v1/registries/model", auth=("api", key))
        httpx.get(server.url + "/api/v1/registries/nope", auth=("api", key))
        metrics = httpx.get(server.url + "/metrics").text
        assert (
            'regalia_http_requests_total{method="GET",route="/api/v1/registries/{name}",'
            'status="404"} 1.0' in metrics
        )
        assert "regalia_http_request_duration_seconds_bucket" in metrics
        page = httpx.get(server.url + "/docs")
        assert page.status_code == 200 and "/static/swagger/swagger-ui-bundle.js" in page.text
        bundle = httpx.get(server.url + "/static/swagger/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and len(bundle.content) > 100_000  # served, offline
        spec = httpx.get(server.url + "/openapi.json").json()
        for path in (
            "/api/v1/resolve",
            "/api/v1/versions/{membership_id}/links",
            "/api/v1/versions/{membership_id}/aliases",
            "/api/v1/registries/{name}/protected-aliases",
            "/api/v1/uploads/{digest}/parts/{number}",
            "/api/v1/versions/{membership_id}/blobs/{digest}",
        ):
            assert path in spec["paths"], path
        assert {"HTTPBearer", "HTTPBasic"} <= set(spec["components"]["securitySchemes"])
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, "the server writes JSON log lines"
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    requests = [line for line in lines if line["msg"] == "request"]
    assert {
        "method": "GET",
        "path": "/api/v1/registries/nope",
        "route": "/api/v1/registries/{name}",
        "status": 404,
    }.items() <= requests[1].items()


def test_two_workers_serve_one_port_and_stop_gracefully_on_sigterm(server_env, tmp_path):
    server = ServerProcess(server_env, workers=2, log=tmp_path / "server.log").start()
    try:
        key = server.api_key
        assert key is not None
        with httpx.Client(base_url=server.url, auth=("api", key)) as client:
            # New connections (spread by the kernel over the workers) and kept-alive ones.
            assert all(httpx.get(server.url + "/healthz").status_code == 200 for _ in range(20))
            assert all(client.get("/api/v1/registries").status_code == 200 for _ in range(20))
        assert server.proc is not None
        started = time.monotonic()
        os.killpg(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert time.monotonic() - started < 15
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/healthz", timeout=2)
    finally:
        server.stop()


def test_login_points_the_cli_at_the_server(server_env, tmp_path, monkeypatch):
    with ServerProcess(server_env, log=tmp_path / "server.log") as server:
        key = server.api_key
        assert key is not None
        httpx.post(
            server.url + "/api/v1/registries",
            json={"name": "OnlyOnTheServer"},
            auth=("api", key),
        ).raise_for_status()
        client_home = tmp_path / "client"
        for name in ("REGALIA_DATABASE_URL", "REGALIA_API_KEY", "REGALIA_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("REGALIA_HOME", str(client_home))
        monkeypatch.setenv("REGALIA_ORG", server_env["REGALIA_ORG"])
        runner = CliRunner()

        bad = runner.invoke(cli, ["login", "--base-url", server.url, "--api-key", "rg_nope"])
        assert bad.exit_code == 1 and "not a Regalia API key" in bad.output
        assert f"regalia login --base-url {server.url}" in bad.output
        assert not (client_home / "login.json").exists()

        done = runner.invoke(cli, ["login", "--base-url", server.url, "--api-key", key])
        assert done.exit_code == 0, done.output
        assert "as admin" in done.output
        saved = client_home / "login.json"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert json.loads(saved.read_text()) == {"base_url": server.url, "api_key": key}

        listed = runner.invoke(cli, ["registry", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        assert "OnlyOnTheServer" in [r["name"] for r in json.loads(listed.stdout)]

        revoke = httpx.delete(server.url + "/api/v1/users/admin/api-keys", auth=("api", key))
        assert revoke.json() == {"revoked": 1}
        refused = runner.invoke(cli, ["registry", "list"])
        assert refused.exit_code == 1 and "this API key was revoked on" in refused.output

        assert runner.invoke(cli, ["logout"]).exit_code == 0
        assert not saved.exists()
        local = runner.invoke(cli, ["registry", "list", "--json"])  # the local store again
        assert "OnlyOnTheServer" not in [r["name"] for r in json.loads(local.stdout)]


def test_a_revoked_key_is_refused_at_once(server_env, tmp_path):
    with ServerProcess(server_env, log=tmp_path / "server.log") as server:
        admin = ("api", server.api_key)
        made = httpx.post(server.url + "/api/v1/users", json={"name": "carol"}, auth=admin).json()
        carol = ("api", made["api_key"])
        assert httpx.get(server.url + "/api/v1/viewer", auth=carol).status_code == 200
        httpx.delete(server.url + "/api/v1/users/carol/api-keys", auth=admin).raise_for_status()
        gone = httpx.get(server.url + "/api/v1/viewer", auth=carol)
        assert gone.status_code == 401
        assert gone.json()["error"]["code"] == "unauthenticated"


def test_keys_are_stored_hashed(server_env, tmp_path, service):
    with ServerProcess(server_env, log=tmp_path / "server.log") as server:
        key = server.api_key
    from sqlalchemy import select

    from regalia.store.models import ApiKey

    hashes = service.db.read(lambda repo: list(repo.s.scalars(select(ApiKey.key_hash))))
    assert hashes and key not in hashes and all(len(h) == 64 for h in hashes)
    assert not any(key in p.read_text(errors="ignore") for p in Path(tmp_path).glob("*.log"))
