"""The official `wandb` client against `regalia server` (issue 14, first slice:
login and identity).

The client is installed from PyPI into a virtualenv of its own (one per pinned
release, kept in ``.wandb-clients/`` of the checkout), never into Regalia's
environment; it talks to a real ``regalia server`` process on 127.0.0.1, with
``WANDB_MODE`` unset and a fresh ``HOME``/``WANDB_DIR`` per test.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from servers import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ROOT / ".wandb-clients"
RELEASE = "0.31.0"


@pytest.fixture(scope="session")
def wandb_python() -> Path:
    """The Python of a virtualenv holding ``wandb==RELEASE`` (made once)."""
    venv = CLIENTS / RELEASE
    python = venv / "bin" / "python"
    CLIENTS.mkdir(exist_ok=True)
    with (CLIENTS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".installed").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                + [f"wandb=={RELEASE}"],
                check=True,
                timeout=900,
            )
            (venv / ".installed").touch()
    return python


@pytest.fixture
def server(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env["REGALIA_HOME"] = str(tmp_path / "regalia")
    with ServerProcess(env, log=tmp_path / "server.log") as srv:
        yield srv


def client_env(tmp_path: Path, server: ServerProcess, key: str | None) -> dict[str, str]:
    home = tmp_path / "client"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "REGALIA_"))}
    env |= {
        "HOME": str(home),
        "WANDB_DIR": str(home),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_SILENT": "true",
        "WANDB_BASE_URL": server.url,
    }
    if key is not None:
        env["WANDB_API_KEY"] = key
    return env


def run(python: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_wandb_login_with_a_regalia_key_saves_it_for_the_server(wandb_python, server, tmp_path):
    env = client_env(tmp_path, server, None)
    cli = str(wandb_python.parent / "wandb")
    done = subprocess.run(
        [cli, "login", "--host", server.url, server.api_key],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    netrc = (Path(env["HOME"]) / ".netrc").read_text()
    assert server.url.removeprefix("http://") in netrc and server.api_key in netrc


def test_a_refused_key_fails_wandb_login_with_regalias_reason(wandb_python, server, tmp_path):
    env = client_env(tmp_path, server, None)
    cli = str(wandb_python.parent / "wandb")
    wrong = server.api_key[:-1] + ("x" if server.api_key[-1] != "x" else "y")
    done = subprocess.run(
        [cli, "login", "--host", server.url, wrong],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "this server has no such API key" in done.stdout + done.stderr
    assert not (Path(env["HOME"]) / ".netrc").exists()


def test_the_public_api_sees_the_keys_user_as_viewer_and_default_entity(
    wandb_python, server, tmp_path
):
    code = "import wandb; api = wandb.Api(); print(api.viewer.username, api.default_entity)"
    done = run(wandb_python, ["-c", code], client_env(tmp_path, server, server.api_key))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["admin", "admin"]


def test_graphql_answers_introspection_from_the_schema_it_keeps(server):
    """Older clients (before 0.26) probe types by introspection."""
    query = '{ __type(name: "User") { name fields { name } } }'
    answer = httpx.post(
        server.url + "/graphql",
        json={"query": query},
        auth=("api", server.api_key),
        timeout=10,
    )
    assert answer.status_code == 200
    fields = {f["name"] for f in answer.json()["data"]["__type"]["fields"]}
    assert {"id", "entity", "username", "teams"} <= fields


def test_graphql_errors_keep_graphqls_shape(server):
    no_key = httpx.post(server.url + "/graphql", json={"query": "{ viewer { id } }"}, timeout=10)
    assert no_key.status_code == 401
    assert no_key.json()["data"] is None and no_key.json()["errors"][0]["message"]
    bad = httpx.post(
        server.url + "/graphql", content=b"{", auth=("api", server.api_key), timeout=10
    )
    assert bad.status_code == 400
    assert "not JSON" in bad.json()["errors"][0]["message"]
    unknown = httpx.post(
        server.url + "/graphql",
        json={"query": "{ viewer { noSuchField } }"},
        auth=("api", server.api_key),
        timeout=10,
    )
    assert unknown.status_code == 200
    assert "noSuchField" in unknown.json()["errors"][0]["message"]


def test_graphql_queries_past_a_limit_get_a_400_naming_it(server):
    """A query cannot make the server work without bound: tokens are counted
    while parsing, resolved fields while answering (a few thousand tokens of
    aliased introspection ask for hundreds of thousands of fields)."""
    auth = ("api", server.api_key)
    many = "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(4000)) + " }"
    answer = httpx.post(server.url + "/graphql", json={"query": many}, auth=auth, timeout=30)
    assert answer.status_code == 400
    error = answer.json()["errors"][0]
    assert error["extensions"]["limit"] == "graphql_tokens" and "tokens" in error["message"]
    each = "__schema { types { name fields { name args { name } type { name kind } } } }"
    wide = "{ " + " ".join(f"s{i}: {each}" for i in range(300)) + " }"
    answer = httpx.post(server.url + "/graphql", json={"query": wide}, auth=auth, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["extensions"]["limit"] == "graphql_fields"
    # The standard introspection query of an older client stays well inside.
    from graphql import get_introspection_query

    full = httpx.post(
        server.url + "/graphql", json={"query": get_introspection_query()}, auth=auth, timeout=30
    )
    assert full.status_code == 200 and full.json()["data"]["__schema"]["types"]
