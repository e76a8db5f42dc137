"""The official `wandb` client against `regalia server` (issue 14, first slice:
login and identity).

The client is installed from PyPI into a virtualenv of its own (one per pinned
release, kept in ``.wandb-clients/`` of the checkout), never into Regalia's
environment; it talks to a real ``regalia server`` process on 127.0.0.1, with
``WANDB_MODE`` unset and a fresh ``HOME``/``WANDB_DIR`` per test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from servers import ServerProcess
from wandb_harness import RELEASES, run, start_server
from wandb_harness import client_env as _client_env
from wandb_harness import wandb_python as _wandb_python


@pytest.fixture(scope="session", params=RELEASES)
def wandb_python(request: pytest.FixtureRequest) -> Path:
    """Each tested release of the client (the newest, and one that introspects)."""
    return _wandb_python(request.param)


@pytest.fixture
def server(tmp_path: Path):
    with start_server(tmp_path) as srv:
        yield srv


def client_env(tmp_path: Path, server: ServerProcess, key: str | None) -> dict[str, str]:
    return _client_env(tmp_path / "client", server, key)


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
    # Releases before 0.26 store a key without checking it unless asked to.
    verify = ["--verify"] if wandb_python.parent.parent.name < "0.26" else []
    done = subprocess.run(
        [cli, "login", *verify, "--host", server.url, wrong],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    if not verify:  # 0.22 prints its own "An error occurred while verifying the API key"
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
    broken = httpx.post(
        server.url + "/graphql",
        json={"query": "{ viewer { id "},
        auth=("api", server.api_key),
        timeout=10,
    )
    assert broken.status_code == 200
    assert "Syntax Error" in broken.json()["errors"][0]["message"]


def test_undeclared_fields_arguments_and_input_fields_are_answered_not_refused(server):
    """Newer clients ask for fields Regalia does not declare: such a field is
    null, an undeclared argument is ignored, an undeclared input field is
    dropped; the rest of the query is answered. An unknown type is an error."""
    auth = ("api", server.api_key)
    query = (
        "{ viewer { name noSuchField teams(first: 1, noSuchArg: 2) { edges { node { name } } } } }"
    )
    answer = httpx.post(server.url + "/graphql", json={"query": query}, auth=auth, timeout=10)
    assert answer.status_code == 200 and "errors" not in answer.json()
    viewer = answer.json()["data"]["viewer"]
    assert viewer["name"] and viewer["noSuchField"] is None
    nested = httpx.post(
        server.url + "/graphql",
        json={"query": "{ viewer { newThing { deeper } id } }"},
        auth=auth,
        timeout=10,
    )
    assert nested.json()["data"]["viewer"]["newThing"] is None
    unknown_type = httpx.post(
        server.url + "/graphql",
        json={
            "query": "query Q($x: NoSuchInput) { entity(name: $x) { id } }",
            "variables": {"x": {}},
        },
        auth=auth,
        timeout=10,
    )
    assert "NoSuchInput" in unknown_type.json()["errors"][0]["message"]


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
