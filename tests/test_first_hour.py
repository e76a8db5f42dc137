"""Issue 13, "the first hour": each surprise a new user met, and what they get now.

* the SDK and CLI say once, on stderr, when they fall back to the local store;
* ``regalia whoami`` says who acts, where (a server and why, or the local store)
  and where the key came from;
* ``regalia init`` refuses to make a local organization while a server is set;
* ``regalia get`` refuses a folder holding other content unless ``--force``;
* a refused key says why (unknown, revoked, another server's, not a key) and
  what to run, over HTTP, in process and on the web UI's login page;
* ``regalia server --workers N`` refuses a port in use, as one process does.

Real parts throughout: ``regalia`` processes, servers on 127.0.0.1, SQLite and
PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from servers import ServerProcess, ThreadServer
from sqlalchemy import select

from regalia.cli.main import cli as command
from regalia.cli.serve import database_shown
from regalia.config import Settings
from regalia.errors import FileConflict, Unauthenticated
from regalia.sdk import backend as sdk_backend_module
from regalia.sdk.artifact import Artifact
from regalia.sdk.backend import LOCAL_NOTICE, InProcessBackend, connect
from regalia.sdk.http import HttpBackend
from regalia.sdk.run import Run
from regalia.service import Service
from regalia.service.base import hash_key
from regalia.store.models import ApiKey

TAGGED_KEY = re.compile(r"rg_[a-z0-9]{6}_[A-Za-z0-9]{40}")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user's shell: no REGALIA_* but the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env.update(REGALIA_HOME=str(home), REGALIA_SILENT="1", **extra)
    return env


def regalia(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """``regalia ARGS...`` as a process of its own (exit code checked)."""
    done = subprocess.run(
        [sys.executable, "-m", "regalia", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code, (args, done.stdout, done.stderr)
    return done


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def fresh_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process has not said where it goes yet (as a new process)."""
    monkeypatch.setattr(sdk_backend_module, "_local_notice_shown", False)


# -- the local store is named on stderr, once per process ---------------------------------
SDK_TWICE = """
import regalia
run = regalia.init(project="p")
api = regalia.Api()
print(len(list(api.registries())))
"""


def test_falling_back_to_the_local_store_is_said_once_per_process(tmp_path):
    home = tmp_path / "home"
    env = clean_env(home)
    notice = LOCAL_NOTICE.format(home=home.resolve())
    assert "set REGALIA_BASE_URL or run 'regalia login'" in notice

    # Commands that only set up the local store, or never open it, say nothing.
    assert regalia(env, "init").stderr == ""
    assert regalia(env, "cache", "clean").stderr == ""

    # A command that reads the store through the SDK says where, once, on stderr only.
    listed = regalia(env, "registry", "list", "--json")
    assert listed.stderr == notice + "\n"
    assert {r["name"] for r in json.loads(listed.stdout)} == {"model", "dataset"}

    # The SDK: regalia.init and regalia.Api in one process, one line.
    script = tmp_path / "sdk_twice.py"
    script.write_text(SDK_TWICE)
    sdk = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert sdk.returncode == 0, sdk.stderr
    assert sdk.stderr == notice + "\n"
    assert sdk.stdout.strip() == "2"

    # An errors still ends in one error line, after the notice.
    refused = regalia(env, "registry", "create", "bad/name", code=1)
    lines = refused.stderr.splitlines()
    assert lines[0] == notice and len(lines) == 2 and lines[1].startswith("error: ")


def test_no_notice_when_a_server_is_set(settings, service, tmp_path, fresh_notice, runner):
    key = service.create_api_key(service.ensure_org())
    with ThreadServer(settings, service) as server:
        env = {"REGALIA_HOME": str(tmp_path / "client"), "REGALIA_BASE_URL": server.url}
        env |= {"REGALIA_API_KEY": key, "REGALIA_DATABASE_URL": ""}
        done = runner.invoke(command, ["registry", "list"], env=env)
        assert done.exit_code == 0, done.output
        assert done.stderr == ""
    assert sdk_backend_module._local_notice_shown is False


# -- whoami -------------------------------------------------------------------------------
def whoami(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> dict:
    done = runner.invoke(command, [*args, "whoami", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert done.stderr == ""  # whoami says where itself: no notice
    return dict(json.loads(done.stdout))


def test_whoami_names_the_user_the_store_or_server_and_the_key(
    settings, service, tmp_path, monkeypatch, runner, fresh_notice
):
    owner = service.ensure_org()
    service.create_team(owner, "vision")
    alice, alice_key = service.create_user(owner, "alice")
    assert alice_key is not None
    service.add_team_member(owner, "vision", "alice")
    for name in ("REGALIA_BASE_URL", "REGALIA_API_KEY", "REGALIA_CACHE_DIR", "REGALIA_BLOB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGALIA_HOME", str(settings.home))
    monkeypatch.setenv("REGALIA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REGALIA_ORG", settings.org_name)

    # The local store, as its owner: the SQLite file or the PostgreSQL URL.
    local = whoami(runner)
    assert (local["user"], local["org"], local["org_role"]) == ("admin", settings.org_name, "admin")
    assert local["key_from"] == "local owner"
    assert local["where"]["kind"] == "local" and local["where"]["home"] == str(settings.home)
    db = local["where"]["database"]
    assert db.startswith("SQLite file " if "sqlite" in settings.database_url else "PostgreSQL ")
    text = runner.invoke(command, ["whoami"]).stdout
    assert f"where: local store {settings.home} ({db})" in text and "key: local owner" in text

    # The local store, as alice (her key in REGALIA_API_KEY, then --api-key).
    monkeypatch.setenv("REGALIA_API_KEY", alice_key)
    as_alice = whoami(runner)
    assert (as_alice["user"], as_alice["org_role"], as_alice["teams"]) == (
        "alice",
        "member",
        ["vision"],
    )
    assert as_alice["key_from"] == "REGALIA_API_KEY"
    monkeypatch.delenv("REGALIA_API_KEY")
    assert whoami(runner, "--api-key", alice_key)["key_from"] == "--api-key"

    with ThreadServer(settings, service) as server:
        # A server named by REGALIA_BASE_URL.
        client = tmp_path / "client"
        monkeypatch.setenv("REGALIA_HOME", str(client))
        monkeypatch.delenv("REGALIA_DATABASE_URL")
        monkeypatch.setenv("REGALIA_BASE_URL", server.url)
        monkeypatch.setenv("REGALIA_API_KEY", alice_key)
        remote = whoami(runner)
        assert remote["where"] == {
            "kind": "server",
            "url": server.url,
            "chosen_by": "REGALIA_BASE_URL",
            "login_file": None,
        }
        assert (remote["user"], remote["teams"], remote["key_from"]) == (
            "alice",
            ["vision"],
            "REGALIA_API_KEY",
        )
        # A saved login.
        monkeypatch.delenv("REGALIA_BASE_URL")
        monkeypatch.delenv("REGALIA_API_KEY")
        login = runner.invoke(command, ["login", "--base-url", server.url, "--api-key", alice_key])
        assert login.exit_code == 0, login.output
        saved = whoami(runner)
        assert saved["where"]["chosen_by"] == "saved login"
        assert saved["where"]["login_file"] == str(client / "login.json")
        assert saved["key_from"] == "saved login"
        text = runner.invoke(command, ["whoami"]).stdout
        assert f"where: server {server.url} (saved login in {client / 'login.json'})" in text


def test_whoami_never_shows_a_database_password(tmp_path):
    settings = Settings(
        home=tmp_path,
        database_url="postgresql+psycopg://reg:s3cret@db.example:5432/regalia"
        "?sslmode=require&password=s3cret",
        blob_dir=tmp_path,
        cache_dir=tmp_path,
    )
    shown = database_shown(settings)
    assert shown == "PostgreSQL postgresql+psycopg://reg@db.example:5432/regalia?sslmode=require"


# -- init refuses while a server is set ----------------------------------------------------
def test_init_refuses_to_make_a_local_org_while_a_login_is_saved(
    settings, service, tmp_path, runner
):
    key = service.create_api_key(service.ensure_org())
    client = tmp_path / "second-machine"
    env = {
        "REGALIA_HOME": str(client),
        "REGALIA_DATABASE_URL": "",
        "REGALIA_API_KEY": "",
        "REGALIA_BASE_URL": "",
    }
    with ThreadServer(settings, service) as server:
        done = runner.invoke(
            command, ["login", "--base-url", server.url, "--api-key", key], env=env
        )
        assert done.exit_code == 0, done.output
        refused = runner.invoke(command, ["init"], env=env)
        assert refused.exit_code == 1
        line = one_error_line(refused)
        assert f"create a local organization in {client.resolve()}, not on {server.url}" in line
        assert "regalia key create" in line and "'regalia logout' first" in line
        assert f"regalia login --base-url {server.url}" in line
        assert not (client / "regalia.db").exists()  # nothing was made locally

        # REGALIA_BASE_URL alone refuses the same way.
        assert runner.invoke(command, ["logout"], env=env).exit_code == 0
        pointed = runner.invoke(command, ["init"], env=env | {"REGALIA_BASE_URL": server.url})
        assert pointed.exit_code == 1
        assert "unset REGALIA_BASE_URL first" in one_error_line(pointed)
        assert not (client / "regalia.db").exists()

    # Logged out, no server: init makes the local organization, as before.
    made = runner.invoke(command, ["init"], env=env)
    assert made.exit_code == 0, made.output
    assert TAGGED_KEY.search(made.stdout) and (client / "regalia.db").is_file()


# -- get refuses conflicting files ---------------------------------------------------------
@pytest.fixture
def cli(sdk_env: Settings, workdir: Path) -> Callable[..., Result]:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Result:
        result = runner.invoke(command, list(args), catch_exceptions=False)
        assert result.exit_code == code, f"{args}: {result.output}"
        return result

    return run


def test_get_refuses_a_folder_with_other_content_unless_force(cli, sdk_env, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.pt").write_bytes(b"trained weights")
    (src / "sub" / "config.json").write_text('{"lr": 0.1}')
    backend = connect(sdk_env)
    try:
        art = Artifact("net", type="model")
        art.add_dir(src)
        Run(backend, backend.actor.name, "proj").log_artifact(art)
        path = art.source_qualified_name
    finally:
        backend.close()

    root = tmp_path / "mine"
    (root / "sub").mkdir(parents=True)
    (root / "model.pt").write_bytes(b"MY OWN model, not saved anywhere else")
    (root / "sub" / "config.json").write_text('{"lr": 0.1}')  # the same content
    (root / "notes.txt").write_text("mine too")  # not in the version

    refused = cli("get", path, "--root", str(root), code=1)
    line = one_error_line(refused)
    assert "1 file there differ" in line and "(model.pt)" in line
    assert "--force" in line and "--root" in line
    assert (root / "model.pt").read_bytes() == b"MY OWN model, not saved anywhere else"

    # Same size, other bytes: found by the hash.
    (root / "model.pt").write_bytes(b"trained weightX")
    assert "(model.pt)" in one_error_line(cli("get", path, "--root", str(root), code=1))

    # --force overwrites what differs and never deletes what is not in the version.
    cli("get", path, "--root", str(root), "--force")
    assert (root / "model.pt").read_bytes() == b"trained weights"
    assert (root / "notes.txt").read_text() == "mine too"
    # Again without --force: the same content is fine.
    assert cli("get", path, "--root", str(root)).stdout.strip() == str(root)

    # A folder where the version has a file is in the way too.
    other = tmp_path / "other"
    (other / "model.pt").mkdir(parents=True)
    assert "(model.pt)" in one_error_line(cli("get", path, "--root", str(other), code=1))

    # The SDK keeps the W&B default (overwrite), and refuses when asked to.
    (root / "model.pt").write_bytes(b"changed again")
    backend = connect(sdk_env)
    try:
        version = Artifact._from_view(backend, backend.resolve(path))
        with pytest.raises(FileConflict) as caught:
            version.download(str(root), overwrite=False)
        assert caught.value.details["paths"] == ["model.pt"]
        version.download(str(root))
        assert (root / "model.pt").read_bytes() == b"trained weights"
    finally:
        backend.close()


# -- a refused key says why and what to run ------------------------------------------------
def log_in_page(client: httpx.Client, key: str) -> httpx.Response:
    form = client.get("/login").text
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form).group(1)
    return client.post("/login", data={"api_key": key, "next": "/", "nonce": nonce})


def refused(url: str, key: str) -> dict:
    r = httpx.get(url + "/api/v1/viewer", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401, r.text
    return dict(r.json()["error"])


@pytest.fixture
def other_store(tmp_path: Path) -> Iterator[Service]:
    """A second store (another server's database, or an earlier one of this machine)."""
    home = tmp_path / "other-store"
    svc = Service(
        Settings(
            home=home,
            database_url=f"sqlite:///{home / 'regalia.db'}",
            blob_dir=home,
            cache_dir=home / "cache",
        )
    )
    yield svc
    svc.close()


def test_a_refused_key_says_why_and_what_to_run(
    settings, service, other_store, tmp_path, runner, fresh_notice
):
    owner = service.ensure_org()
    admin_key = service.create_api_key(owner)
    assert TAGGED_KEY.fullmatch(admin_key)
    tag = admin_key[3:9]
    stored = service.db.read(
        lambda r: r.s.scalar(select(ApiKey.prefix).where(ApiKey.key_hash == hash_key(admin_key)))
    )
    assert stored == admin_key[:16]
    _, carol_key = service.create_user(owner, "carol")
    _, dave_key = service.create_user(owner, "dave")
    assert carol_key and dave_key
    foreign = other_store.create_api_key(other_store.ensure_org())
    assert foreign[3:9] != tag
    # A key issued before tags (rg_ and 40 URL-safe characters) keeps working.
    legacy = "rg_" + secrets.token_urlsafe(30)
    service.db.write(
        lambda r: r.add(
            ApiKey(
                user_id=owner.user_id,
                key_hash=hash_key(legacy),
                prefix=legacy[:8],
                created_at=service.now(),
            )
        )
    )

    with ThreadServer(settings, service) as server:
        url = server.url
        auth = {"Authorization": f"Bearer {admin_key}"}
        legacy_ok = httpx.get(url + "/api/v1/viewer", headers={"Authorization": f"Bearer {legacy}"})
        assert legacy_ok.status_code == 200 and legacy_ok.json()["name"] == "admin"

        # Revoked: remembered by the server a moment ago, refused at once after (through
        # the route, and through the service directly: the server's memory follows both).
        for key in (carol_key, dave_key):
            seen = httpx.get(url + "/api/v1/viewer", headers={"Authorization": f"Bearer {key}"})
            assert seen.status_code == 200
        httpx.delete(url + "/api/v1/users/carol/api-keys", headers=auth).raise_for_status()
        service.revoke_api_keys(owner, "dave")
        for name, key in (("carol", carol_key), ("dave", dave_key)):
            err = refused(url, key)
            assert err["details"]["reason"] == "revoked" and err["details"]["revoked_at"]
            assert "was revoked on" in err["message"] and "regalia key create" in err["message"]
            assert name not in json.dumps(err)  # never whose key it was

        err = refused(url, foreign)
        assert err["details"] == {
            "reason": "other_server",
            "key_tag": foreign[3:9],
            "server_tag": tag,
        }
        assert f"another Regalia server or an earlier store (tag {foreign[3:9]})" in err["message"]
        assert f"this server is tag {tag}" in err["message"]

        typo = admin_key[:-1] + ("A" if admin_key[-1] != "A" else "B")
        assert refused(url, typo)["details"] == {"reason": "unknown"}
        assert refused(url, "rg_" + secrets.token_urlsafe(30))["details"] == {"reason": "unknown"}
        assert refused(url, "hunter2")["details"] == {"reason": "malformed"}

        # The SDK and the CLI: one line naming the server and what to run.
        with pytest.raises(Unauthenticated) as caught:
            HttpBackend(url, foreign)
        message = caught.value.message
        assert message.startswith(f"the Regalia server at {url} refused the API key: ")
        assert f"log in with a key from this server: regalia login --base-url {url}" in message
        env = {"REGALIA_HOME": str(tmp_path / "client"), "REGALIA_BASE_URL": url}
        env |= {"REGALIA_DATABASE_URL": "", "REGALIA_API_KEY": carol_key}
        cli_refused = runner.invoke(command, ["registry", "list"], env=env)
        assert cli_refused.exit_code == 1
        line = one_error_line(cli_refused)
        assert f"the Regalia server at {url} refused the API key" in line and "revoked" in line
        assert f"regalia login --base-url {url} --api-key KEY" in line

        # The web UI's login page says the same.
        with httpx.Client(base_url=url) as browser:
            page = log_in_page(browser, foreign)
            assert page.status_code == 401
            assert f"this server is tag {tag}" in page.text
            page = log_in_page(browser, carol_key)
            assert page.status_code == 401 and "was revoked on" in page.text
            assert log_in_page(browser, admin_key).status_code == 303

    # In process (REGALIA_API_KEY against the local store): the same reasons.
    for key, reason in ((carol_key, "revoked"), (foreign, "other_server"), ("x", "malformed")):
        with pytest.raises(Unauthenticated) as caught:
            InProcessBackend(settings, api_key=key)
        assert caught.value.details["reason"] == reason
        assert f"the local store in {settings.home} refused the API key" in caught.value.message


# -- one server per port -------------------------------------------------------------------
def test_a_second_server_on_a_port_in_use_is_refused(settings, tmp_path):
    env = clean_env(settings.home, REGALIA_DATABASE_URL=settings.database_url)
    env["REGALIA_ORG"] = settings.org_name
    with ServerProcess(env, workers=2, log=tmp_path / "first.log") as first:
        port = first.url.rsplit(":", 1)[1]
        key = first.api_key
        assert key is not None
        second_home = tmp_path / "second"
        for workers in ("2", "1"):
            started = time.monotonic()
            second = regalia(
                clean_env(second_home),
                "server",
                "--port",
                port,
                "--workers",
                workers,
                code=1,
            )
            assert time.monotonic() - started < 60
            line = one_line(second.stderr)
            assert line.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
            assert "already in use" in line
            assert not (second_home / "regalia.db").exists()  # refused before its store
        # The first server still answers every request, on new connections each time.
        for _ in range(20):
            r = httpx.get(first.url + "/api/v1/viewer", auth=("api", key), timeout=5)
            assert r.status_code == 200 and r.json()["name"] == "admin"


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]
