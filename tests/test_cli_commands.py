"""CLI completeness (issue 13): ``regalia log``, ``unlink``, ``key list/create/
revoke``, exit codes that tell how a delivery went, ``--json`` on every read
command, and automations on hosts that do not resolve right now.

The ``cli`` fixture (from ``test_cli.py``) runs the real command in this
process on SQLite and PostgreSQL, in-process and through a server on
127.0.0.1; the tests marked "server process" run a real ``regalia server``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import click
import httpx
import pytest
from automation_helpers import Receiver
from click.testing import CliRunner, Result
from servers import ServerProcess, ThreadServer
from test_cli import Cli, new_user, one_error_line

from regalia.cli.main import cli as root_command
from regalia.config import Settings
from regalia.core.targets import check_target, resolves_now
from regalia.errors import InvalidRequest
from regalia.service import Service


@pytest.fixture
def cli(sdk_env: Settings, workdir: Path) -> Cli:
    """Run ``regalia ARGS...`` (as test_cli.py does): ``key=`` acts as that user,
    ``code=`` is the exit code expected."""
    runner = CliRunner()

    def invoke(*args: str, key: str | None = None, code: int = 0) -> Result:
        env = {"REGALIA_API_KEY": key} if key else {}
        result = runner.invoke(root_command, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, f"{args}: {result.output}"
        return result

    return invoke


UNRESOLVABLE = "https://hooks.regalia-test.invalid/services/T0/B0/XXXX"  # RFC 2606: never resolves


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


# -- regalia log -------------------------------------------------------------------------------


def test_log_a_file_and_a_folder_then_get_them_back(cli: Cli, tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"\x00weights\xff" * 100)
    out = cli(
        "log", str(weights), "--name", "zoo_model", "--type", "model", "-a", "candidate",
        "--alias", "best", "--tag", "baseline", "--description", "first try",
        "--metadata", '{"epochs": 3, "lr": 0.1}', "--project", "zoo",
    ).stdout  # fmt: skip
    assert out.strip() == (
        "Logged admin/zoo/zoo_model:v0 (1 files, 900 B; aliases: latest, candidate, best)"
    )
    got = cli("get", "admin/zoo/zoo_model:candidate", "--root", str(tmp_path / "back"))
    assert (tmp_path / "back" / "model.pt").read_bytes() == weights.read_bytes()
    assert got.stdout.strip() == str(tmp_path / "back")
    version = json.loads(cli("ls", "admin/zoo/zoo_model:v0", "--json").stdout)["version"]
    assert version["metadata"] == {"epochs": 3, "lr": 0.1}
    assert version["description"] == "first try" and version["tags"] == ["baseline"]

    folder = tmp_path / "dataset"
    (folder / "images" / "cats").mkdir(parents=True)
    (folder / "labels.csv").write_text("cat,1\n")
    (folder / "images" / "cats" / "1.png").write_bytes(b"png-1")
    (folder / "images" / "2.png").write_bytes(b"png-2")
    logged = json.loads(cli("log", str(folder), "--type", "dataset", "--json").stdout)
    assert (logged["source_entity"], logged["source_project"]) == ("admin", "uncategorized")
    assert (logged["source_name"], logged["index"], logged["created"]) == ("dataset", 0, True)
    assert logged["file_count"] == 3
    cli("get", "admin/uncategorized/dataset:v0", "--root", str(tmp_path / "ds"))
    assert _tree(tmp_path / "ds") == _tree(folder)
    files = json.loads(cli("ls", "admin/uncategorized/dataset:latest", "--json").stdout)["files"]
    assert {f["path"]: f["digest"] for f in files} == {
        "images/2.png": hashlib.sha256(b"png-2").hexdigest(),
        "images/cats/1.png": hashlib.sha256(b"png-1").hexdigest(),
        "labels.csv": hashlib.sha256(b"cat,1\n").hexdigest(),
    }


def test_logging_identical_content_reuses_the_version(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"same bytes")
    first = cli("log", str(tmp_path / "a"), "--name", "net", "--type", "model").stdout
    assert first.startswith("Logged admin/uncategorized/net:v0 ")
    # The same content from another folder, with an alias: the same version gets it.
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "w.bin").write_bytes(b"same bytes")
    again = cli(
        "log", str(tmp_path / "b"), "--name", "net", "--type", "model", "-a", "prod",
        "--description", "ignored",
    )  # fmt: skip
    assert again.stdout.startswith("Identical content, reused admin/uncategorized/net:v0 ")
    assert "aliases: latest, prod" in again.stdout
    assert "keeps the description and metadata" in again.stderr
    as_json = json.loads(cli("log", str(tmp_path / "b"), "--name", "net", "--type", "model",
                             "--json").stdout)  # fmt: skip
    assert (as_json["index"], as_json["created"], as_json["description"]) == (0, False, "")
    (tmp_path / "b" / "w.bin").write_bytes(b"other bytes")
    new = cli("log", str(tmp_path / "b" / "w.bin"), "--name", "net", "--type", "model").stdout
    assert new.startswith("Logged admin/uncategorized/net:v1 ")


def test_log_refuses_what_it_cannot_log_before_uploading(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    (tmp_path / "y").write_text("y")
    (tmp_path / "empty").mkdir()
    several = cli("log", str(tmp_path / "x"), str(tmp_path / "y"), "--type", "t", code=1)
    assert "give --name NAME" in one_error_line(several)
    bad = cli("log", str(tmp_path / "x"), "--type", "t", "--metadata", "[1, 2]", code=1)
    assert "--metadata must be a JSON object" in one_error_line(bad)
    bad = cli("log", str(tmp_path / "x"), "--type", "t", "--metadata", "{nope", code=1)
    assert "--metadata is not valid JSON" in one_error_line(bad)
    empty = cli("log", str(tmp_path / "empty"), "--type", "t", code=1)
    assert "holds no files" in one_error_line(empty)
    wrong = cli("log", str(tmp_path / "x"), "--type", "t", "--name", "a/b", code=1)
    assert "artifact name 'a/b' is invalid" in one_error_line(wrong)
    cli("log", str(tmp_path / "missing"), "--type", "t", code=2)  # click: no such path
    cli("log", str(tmp_path / "x"), code=2)  # --type is required
    cli("log", str(tmp_path / "x"), "--name", "same", "--type", "model")
    other = cli("log", str(tmp_path / "y"), "--name", "same", "--type", "dataset", code=1)
    assert "has type 'model'" in one_error_line(other)


# -- regalia unlink ----------------------------------------------------------------------------


def test_unlink_removes_the_link_and_keeps_the_source(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "w").write_text("weights")
    cli("log", str(tmp_path / "w"), "--name", "net", "--type", "model")
    cli("link", "admin/uncategorized/net:v0", "wandb-registry-model/zoo", "-a", "staging")
    (tmp_path / "w").write_text("weights 2")
    cli("log", str(tmp_path / "w"), "--name", "net", "--type", "model")
    cli("link", "admin/uncategorized/net:v1", "wandb-registry-model/zoo")

    out = cli("unlink", "wandb-registry-model/zoo:staging").stdout
    assert out.strip() == (
        "Unlinked wandb-registry-model/zoo:v0 (the source admin/uncategorized/net:v0 stays); "
        "its aliases staging went with it."
    )
    versions = json.loads(cli("ls", "wandb-registry-model/zoo", "--json").stdout)
    assert [v["index"] for v in versions] == [1]
    assert json.loads(cli("ls", "admin/uncategorized/net:v0", "--json").stdout)["files"]
    gone = cli("unlink", "wandb-registry-model/zoo:staging", code=1)
    assert "staging" in one_error_line(gone)
    source = cli("unlink", "admin/uncategorized/net:v1", code=1)
    assert "is a source version, not a registry link" in one_error_line(source)
    events = json.loads(cli("history", "wandb-registry-model/zoo", "--json").stdout)
    assert events[0]["action"] == "unlink" and events[0]["version_index"] == 0


def test_unlink_of_a_protected_alias_is_refused_to_a_member(cli: Cli, tmp_path: Path) -> None:
    dave = new_user(cli, "dave")
    cli("registry", "member", "add", "model", "dave", "--role", "member")
    (tmp_path / "w").write_text("weights")
    cli("log", str(tmp_path / "w"), "--name", "net", "--type", "model")
    cli("link", "admin/uncategorized/net:v0", "wandb-registry-model/zoo", "-a", "production")
    cli("registry", "protect", "model", "production")
    refused = cli("unlink", "wandb-registry-model/zoo:production", key=dave, code=1)
    assert "protected" in one_error_line(refused) and "admin" in refused.stderr
    cli("unlink", "wandb-registry-model/zoo:production")  # a registry admin may
    viewer = new_user(cli, "vic", "--org-role", "viewer")
    cli("link", "admin/uncategorized/net:v0", "wandb-registry-model/zoo")
    refused = cli("unlink", "wandb-registry-model/zoo:v1", key=viewer, code=1)
    assert "role" in one_error_line(refused)


# -- regalia key -------------------------------------------------------------------------------


def _prefixes(cli: Cli, *args: str, key: str | None = None) -> dict[str, str | None]:
    keys = json.loads(cli("key", "list", *args, "--json", key=key).stdout)
    return {k["prefix"]: k["revoked_at"] for k in keys}


def test_key_list_create_revoke(cli: Cli) -> None:
    bob = new_user(cli, "bob")
    made = cli("key", "create", "--user", "bob").stdout
    second = re.search(r"export REGALIA_API_KEY=(\S+)", made)
    assert second and "Created an API key for 'bob'" in made
    bob2 = second.group(1)
    keys = json.loads(cli("key", "list", "--user", "bob", "--json").stdout)
    assert [k["user"] for k in keys] == ["bob", "bob"]
    assert [k["revoked_at"] for k in keys] == [None, None]
    assert bob.startswith(keys[0]["prefix"]) and bob2.startswith(keys[1]["prefix"])
    assert all(1 <= len(k["prefix"]) <= 16 and k["prefix"] not in (bob, bob2) for k in keys)
    assert _prefixes(cli, key=bob) == _prefixes(cli, "--user", "bob")  # bob lists his own

    table = cli("key", "list", "--user", "bob").stdout.splitlines()
    assert table[0].split() == ["PREFIX", "USER", "CREATED", "REVOKED"]
    assert len(table) == 3

    # Revoking by a prefix: that key stops working at once, the other goes on.
    out = cli("key", "revoke", keys[0]["prefix"]).stdout
    assert out.strip() == f"Revoked the API key {keys[0]['prefix']}… of 'bob'."
    refused = cli("team", "list", key=bob, code=1)
    assert "revoked" in one_error_line(refused)
    if base_url := os.environ.get("REGALIA_BASE_URL"):  # through the server: 401
        answer = httpx.get(f"{base_url}/api/v1/viewer", headers={"Authorization": f"Bearer {bob}"})
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthenticated"
    cli("team", "list", key=bob2)
    revoked = _prefixes(cli, "--user", "bob")
    assert revoked[keys[0]["prefix"]] is not None and revoked[keys[1]["prefix"]] is None
    again = cli("key", "revoke", keys[0]["prefix"], code=1)
    assert "was revoked already" in one_error_line(again)

    # A prefix several active keys start with is refused, naming how many.
    admin_key = re.search(r"REGALIA_API_KEY=(\S+)", cli("key", "create").stdout)
    assert admin_key
    active = [
        p for who in ((), ("--user", "bob")) for p, r in _prefixes(cli, *who).items() if not r
    ]
    assert len(active) >= 2  # bob's second key, the admin's new one (and the server's)
    ambiguous = cli("key", "revoke", "rg_", code=1)
    assert f"{len(active)} active API keys start with 'rg_'" in one_error_line(ambiguous)
    cli("team", "list", key=bob2)  # nothing was revoked
    unknown = cli("key", "revoke", "no-such-key", code=1)
    assert "no API key in the organization starts with 'no-such-key'" in one_error_line(unknown)

    # bob may not list or revoke the admin's keys: his search covers only his own.
    denied = cli("key", "list", "--user", "admin", key=bob2, code=1)
    assert "organization role 'admin'" in one_error_line(denied)
    admin_prefix = next(p for p in _prefixes(cli) if admin_key.group(1).startswith(p))
    hidden = cli("key", "revoke", admin_prefix, key=bob2, code=1)
    assert "no API key of yours starts with" in one_error_line(hidden)
    cli("key", "list", key=admin_key.group(1))  # still works

    # Revoking the key in use is allowed, with a warning; the whole key works as a prefix.
    own = cli("key", "revoke", bob2, key=bob2)
    assert own.stdout.startswith("Revoked the API key ")
    assert own.stderr.startswith("warning: that is the key this command used")
    assert "revoked" in one_error_line(cli("team", "list", key=bob2, code=1))


def _client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, key: str) -> None:
    """The CLI on another machine: only a server URL and a key."""
    for var in [v for v in os.environ if v.startswith("REGALIA_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("REGALIA_SILENT", "1")
    monkeypatch.setenv("REGALIA_BASE_URL", url)
    monkeypatch.setenv("REGALIA_API_KEY", key)


def _server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env |= {"REGALIA_HOME": str(settings.home), "REGALIA_DATABASE_URL": settings.database_url,
            "REGALIA_ORG": settings.org_name, "REGALIA_SILENT": "1", **extra}  # fmt: skip
    return env


def run(*args: str, key: str | None = None, code: int = 0) -> Result:
    """``regalia ARGS...`` in the environment the test set (``key=``: as that key)."""
    env = {"REGALIA_API_KEY": key} if key else {}
    result = CliRunner().invoke(root_command, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, f"{args}: {result.output}"
    return result


def test_server_process_revoked_key_gets_401_at_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real ``regalia server``: a key the server remembers (it just
    answered it) is refused on the very next request after ``key revoke``."""
    with ServerProcess(_server_env(settings), log=tmp_path / "server.log") as server:
        assert server.api_key is not None
        _client_env(monkeypatch, tmp_path, server.url, server.api_key)
        made = re.search(r"REGALIA_API_KEY=(\S+)", run("key", "create").stdout)
        assert made
        spare = made.group(1)
        auth = {"Authorization": f"Bearer {server.api_key}"}
        assert httpx.get(server.url + "/api/v1/viewer", headers=auth).status_code == 200
        prefix = next(p for p in _prefixes(run) if server.api_key.startswith(p))
        out = run("--api-key", spare, "key", "revoke", prefix)
        assert out.stdout.strip() == f"Revoked the API key {prefix}… of 'admin'."
        assert out.stderr == ""  # another key did it: no warning
        answer = httpx.get(server.url + "/api/v1/viewer", headers=auth)
        assert answer.status_code == 401, answer.text
        assert "revoked" in run("key", "list", code=1).stderr
        assert json.loads(run("--api-key", spare, "key", "list", "--json").stdout)[0]["revoked_at"]


def test_the_openapi_document_lists_the_key_routes_truthfully(settings: Settings) -> None:
    service = Service(settings)
    try:
        key = service.create_api_key(service.ensure_org())
        with ThreadServer(settings, service) as server:
            auth = {"Authorization": f"Bearer {key}"}
            doc = httpx.get(server.url + "/openapi.json").json()
            revoke = doc["paths"]["/api/v1/api-keys/{prefix}"]["delete"]
            assert set(revoke["responses"]) == {"200", "400", "401", "404", "409", "503"}
            [param] = revoke["parameters"]
            assert (param["schema"]["minLength"], param["schema"]["maxLength"]) == (1, 16)
            listing = doc["paths"]["/api/v1/users/{name}/api-keys"]["get"]
            assert "403" in listing["responses"]
            assert "403" not in doc["paths"]["/api/v1/viewer/api-keys"]["get"]["responses"]
            view = doc["components"]["schemas"]["KeyView"]
            assert view["required"] == ["created_at", "prefix", "revoked_at", "user"]
            for url, status in [
                ("/api/v1/api-keys/nothing-here", 404),
                ("/api/v1/api-keys/" + "x" * 17, 400),
            ]:
                answer = httpx.delete(server.url + url, headers=auth)
                assert answer.status_code == status, answer.text
                assert str(status) in revoke["responses"]
            mine = httpx.get(server.url + "/api/v1/viewer/api-keys", headers=auth).json()
            assert [k["prefix"] for k in mine] == [key[: len(mine[0]["prefix"])]]
    finally:
        service.close()


# -- automation exit codes ---------------------------------------------------------------------


def test_server_process_automation_test_wait_exit_code_tells_the_outcome(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``automation test --wait`` exits 1 when the delivery failed (the
    receiver answered 500) and 0 only when it succeeded; so does ``redeliver``."""
    env = _server_env(
        settings, REGALIA_AUTOMATION_ALLOW_PRIVATE="1", REGALIA_AUTOMATION_MAX_ATTEMPTS="1"
    )
    with (
        Receiver([(500, {}), (200, {})]) as flaky,
        Receiver([(200, {})]) as good,
        ServerProcess(env, log=tmp_path / "server.log") as server,
    ):
        assert server.api_key is not None
        _client_env(monkeypatch, tmp_path, server.url, server.api_key)
        for name, url in [("flaky", flaky.url), ("good", good.url)]:
            run("automation", "create", "model", name, "--event", "LINK_ARTIFACT", "--webhook", url)
        ids = {a["name"]: a["id"] for a in json.loads(run("automation", "list", "model",
                                                          "--json").stdout)}  # fmt: skip

        failed = run("automation", "test", str(ids["flaky"]), "--wait", "20", code=1)
        [error] = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
        delivery = re.search(r"Queued test delivery (\w+)\.", failed.stdout)
        assert delivery, failed.stdout
        assert error.startswith(f"error: delivery {delivery.group(1)} failed (last status failed")
        assert "code 500" in error and "1 tries" in error
        assert "failed" in failed.stdout  # the table row
        assert len(flaky.requests) == 1

        again = run("automation", "redeliver", delivery.group(1), "--wait", "20")
        assert "succeeded" in again.stdout and again.stderr == ""
        assert len(flaky.requests) == 2

        ok = run("automation", "test", str(ids["good"]), "--wait", "20")
        assert ok.stderr == "" and "succeeded" in ok.stdout
        assert len(good.requests) == 1
        assert json.loads(good.requests[0][2])["event_type"] == "LINK_ARTIFACT"


def test_automation_test_wait_fails_when_nothing_sends_it_in_time(cli: Cli) -> None:
    """No worker runs here: the delivery stays pending, and --wait says so (exit 1)."""
    made = cli("automation", "create", "model", "hook", "--event", "LINK_ARTIFACT",
               "--webhook", "https://hooks.example.com/x", "--json")  # fmt: skip
    auto = str(json.loads(made.stdout)["id"])
    queued = cli("automation", "test", auto, code=0)  # no --wait: queued is all it says
    assert queued.stdout.startswith("Queued test delivery ")
    late = cli("automation", "test", auto, "--wait", "0.3", code=1)
    line = one_error_line_after_table(late)
    assert "did not finish within 0.3 seconds (last status pending, 0 tries, code none)" in line
    assert "'regalia server' or 'regalia worker' sends deliveries" in line
    cli("automation", "test", auto, "--wait", "-1", code=2)


def one_error_line_after_table(result: Result) -> str:
    """A --wait failure prints the delivery's row on stdout, then one error line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "DELIVERY" in result.stdout and "Traceback" not in result.output
    return lines[0]


# -- automations on hosts that do not resolve now ----------------------------------------------


def test_a_target_host_that_does_not_resolve_now_is_accepted_with_a_note(cli: Cli) -> None:
    made = cli("automation", "create", "model", "offline", "--event", "ADD_ARTIFACT_ALIAS",
               "--alias-regex", "^prod", "--slack", UNRESOLVABLE)  # fmt: skip
    found = re.match(r"Created automation (\d+) 'offline' on model \(all\)", made.stdout)
    assert found, made.stdout
    auto = found.group(1)
    assert made.stderr.strip() == (
        "note: the target host 'hooks.regalia-test.invalid' does not resolve now; "
        "deliveries will fail (and be retried) until it does"
    )
    shown = json.loads(cli("automation", "show", auto, "--json").stdout)
    assert shown["target"] == "https://hooks.regalia-test.invalid/…"
    # Private and loopback targets stay refused (REGALIA_AUTOMATION_ALLOW_PRIVATE is unset).
    for url in ["http://localhost:9/hook", "http://127.0.0.1/x", "http://[::1]/x"]:
        refused = cli("automation", "create", "model", "local", "--event", "LINK_ARTIFACT",
                      "--webhook", url, code=1)  # fmt: skip
        assert "REGALIA_AUTOMATION_ALLOW_PRIVATE" in one_error_line(refused)
    # A public address says nothing more.
    public = cli("automation", "create", "model", "public", "--event", "LINK_ARTIFACT",
                 "--webhook", "http://8.8.8.8/hook")  # fmt: skip
    assert public.stderr == ""
    human = cli("automation", "show", auto).stdout.splitlines()
    assert human[0].split() == ["id:", auto] and "target:       https://hooks" in human[7]


def test_check_target_accepts_a_name_that_does_not_resolve_but_not_a_private_one() -> None:
    def offline(host: str, port: int) -> list[str]:
        raise OSError(-3, "Temporary failure in name resolution")

    def private(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    target = check_target(
        "https://hooks.slack.com/services/x", allow_private=False, resolve=offline
    )
    assert target.host == "hooks.slack.com"
    with pytest.raises(InvalidRequest, match=r"'hooks.slack.com' \(10.0.0.7\).*private"):
        check_target("https://hooks.slack.com/x", allow_private=False, resolve=private)
    with pytest.raises(InvalidRequest, match="loopback"):
        check_target("http://127.0.0.1/x", allow_private=False, resolve=offline)
    assert not resolves_now("https://hooks.slack.com/x", resolve=offline)
    assert resolves_now("http://127.0.0.1/x", resolve=offline)  # an address needs no lookup
    assert resolves_now("https://x.example/", resolve=lambda h, p: ["8.8.8.8"])


# -- --json on every read command --------------------------------------------------------------

# Every command that is not a read: it changes something (on the server, in a
# local folder or file) or runs until stopped. Every other command reads, and
# must take --json. A new command must be put here or given --json.
NOT_READS = {
    "init", "login", "logout", "server", "worker", "demo", "cache clean", "get", "log",
    "link", "unlink", "alias add", "alias rm",
    "user create", "team create", "team add", "team role", "team rm",
    "registry create", "registry member add", "registry member rm",
    "registry protect", "registry unprotect",
    "key create", "key revoke",
    "automation create", "automation enable", "automation disable", "automation rm",
    "automation test", "automation redeliver",
}  # fmt: skip


def _leaves(cmd: click.Command, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    if isinstance(cmd, click.Group):
        found: dict[str, click.Command] = {}
        for name, sub in cmd.commands.items():
            found |= _leaves(sub, (*path, name))
        return found
    return {" ".join(path): cmd}


def test_every_read_command_takes_json() -> None:
    commands = _leaves(root_command)
    unknown = NOT_READS - set(commands)
    assert not unknown, f"NOT_READS names commands that do not exist: {sorted(unknown)}"
    reads = sorted(set(commands) - NOT_READS)
    assert {"ls", "history", "key list", "automation show", "registry members"} <= set(reads)
    lacking = [
        name
        for name in reads
        if not any("--json" in getattr(p, "opts", []) for p in commands[name].params)
    ]
    assert not lacking, f"read commands without --json: {lacking} (or list them in NOT_READS)"
