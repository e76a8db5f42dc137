"""The ``regalia`` command, driven through click's runner on SQLite and PostgreSQL.

Each test reads as a user's session: what they type, what they see, and what
the registry holds afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regalia.config import Settings
from regalia.sdk.artifact import Artifact
from regalia.sdk.backend import InProcessBackend
from regalia.sdk.run import Run

KEY = re.compile(r"export REGALIA_API_KEY=(rg_\S+)")
Cli = Callable[..., Result]


@pytest.fixture
def cli(sdk_env: Settings, workdir: Path) -> Cli:
    """Run ``regalia ARGS...``; ``key=`` acts as that user; ``code=`` is the exit code expected."""
    from regalia.cli.main import cli as command

    runner = CliRunner()

    def run(*args: str, key: str | None = None, code: int = 0) -> Result:
        env = {"REGALIA_API_KEY": key} if key else {}
        result = runner.invoke(command, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, f"{args}: {result.output}"
        return result

    return run


@pytest.fixture
def log_file(sdk_env: Settings, tmp_path: Path) -> Callable[..., str]:
    """Log a one-file dataset through the SDK; return its source path ``entity/proj/name:vN``."""

    def log(content: str, *, key: str | None = None, name: str = "zoo_data") -> str:
        local = tmp_path / f"{name}-{hashlib.sha256(content.encode()).hexdigest()[:8]}.txt"
        local.write_text(content)
        backend = InProcessBackend(sdk_env, api_key=key)
        try:
            run = Run(backend, backend.actor.name, "proj")
            art = Artifact(name, type="dataset")
            art.add_file(local, name="data.txt")
            run.log_artifact(art)
            return art.source_qualified_name
        finally:
            backend.close()

    return log


def new_user(cli: Cli, name: str, *args: str) -> str:
    out = cli("user", "create", name, *args).stdout
    match = KEY.search(out)
    assert match, out
    return match.group(1)


def one_error_line(result: Result) -> str:
    """An expected failure prints exactly one ``error:`` line on stderr and nothing else."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    return lines[0]


def test_init_prints_a_key_that_works_as_regalia_api_key(cli: Cli, sdk_backend: str) -> None:
    if sdk_backend == "http":  # REGALIA_BASE_URL is set: init would not make a key of it
        assert "would create a local organization" in one_error_line(cli("init", code=1))
        return
    out = cli("init").stdout
    key = KEY.search(out)
    assert key, out
    users = json.loads(cli("user", "list", "--json", key=key.group(1)).stdout)
    assert [(u["name"], u["org_role"]) for u in users] == [("admin", "admin")]
    # Running it again keeps the organization and issues one more key.
    again = KEY.search(cli("init").stdout)
    assert again and again.group(1) != key.group(1)
    assert json.loads(cli("user", "list", "--json", key=again.group(1)).stdout) == users


def test_an_unknown_api_key_is_one_error_line(cli: Cli) -> None:
    result = cli("--api-key", "rg_not-a-key", "registry", "list", code=1)
    assert "this is not a Regalia API key" in one_error_line(result)
    typo = cli("--api-key", "rg_" + "x" * 40, "registry", "list", code=1)
    assert "this server has no such API key" in one_error_line(typo)


def test_user_create_prints_a_key_that_acts_as_that_user(cli: Cli) -> None:
    alice = new_user(cli, "alice")
    out = cli("team", "create", "vision-team", key=alice).stdout
    assert "members: alice" in out
    # alice is an org member, not an admin: she may not create users.
    refused = cli("user", "create", "mallory", key=alice, code=1)
    assert "organization role 'admin'" in one_error_line(refused)
    bot = json.loads(cli("user", "create", "ci-bot", "--service-account", "--json").stdout)
    assert bot["user"]["kind"] == "service" and bot["api_key"].startswith("rg_")
    users = {u["name"]: u for u in json.loads(cli("user", "list", "--json").stdout)}
    assert set(users) == {"admin", "alice", "ci-bot"}
    assert users["alice"]["teams"] == ["vision-team"]


def test_registry_create_then_list_as_json(cli: Cli) -> None:
    cli(
        "registry",
        "create",
        "Vision",
        "--visibility",
        "restricted",
        "--types",
        "model, dataset",
        "--description",
        "Vision models",
    )
    regs = {r["name"]: r for r in json.loads(cli("registry", "list", "--json").stdout)}
    assert set(regs) == {"model", "dataset", "Vision"}
    assert regs["Vision"]["visibility"] == "restricted"
    assert regs["Vision"]["artifact_types"] == ["model", "dataset"]
    assert regs["Vision"]["description"] == "Vision models"
    assert regs["Vision"]["role"] == "admin"
    # Names ignore case: 'vision' is the same registry.
    dup = cli("registry", "create", "vision", code=1)
    assert "already exists" in one_error_line(dup)
    table = cli("registry", "list").stdout.splitlines()
    assert table[0].split()[:2] == ["NAME", "VISIBILITY"]
    assert any(line.startswith("Vision ") and "restricted" in line for line in table)


def test_member_add_lets_the_member_link(cli: Cli, log_file: Callable[..., str]) -> None:
    bob = new_user(cli, "bob")
    cli("registry", "create", "vision")
    source = log_file("bob's weights", key=bob)
    refused = cli("link", source, "wandb-registry-vision/nets", key=bob, code=1)
    assert "'member'" in one_error_line(refused)

    cli("registry", "member", "add", "vision", "bob", "--role", "member")
    out = cli("link", source, "wandb-registry-vision/nets", "--alias", "candidate", key=bob)
    assert "wandb-registry-vision/nets:v0" in out.stdout and "candidate" in out.stdout
    members = json.loads(cli("registry", "members", "wandb-registry-vision", "--json").stdout)
    assert {(m["kind"], m["name"], m["role"]) for m in members} >= {("user", "bob", "member")}

    cli("registry", "member", "rm", "vision", "bob")
    refused = cli("alias", "add", "wandb-registry-vision/nets:v0", "best", key=bob, code=1)
    assert "'member'" in one_error_line(refused)


def test_member_add_falls_back_to_a_team(cli: Cli) -> None:
    new_user(cli, "carol")
    cli("team", "create", "ml")
    cli("team", "add", "ml", "carol")
    cli("registry", "create", "vision")
    cli("registry", "member", "add", "vision", "ml", "--role", "viewer")
    members = json.loads(cli("registry", "members", "vision", "--json").stdout)
    assert {"kind": "team", "name": "ml", "role": "viewer"} in members
    missing = cli("registry", "member", "add", "vision", "nobody", "--role", "viewer", code=1)
    assert "no user or team named 'nobody'" in one_error_line(missing)
    cli("registry", "member", "add", "vision", "carol", "--role", "viewer", "--team", code=1)
    # A missing --role is a usage error: exit code 2, as click does.
    cli("registry", "member", "add", "vision", "ml", code=2)


def test_team_admins_manage_members_and_registries_record_it(cli: Cli) -> None:
    """Finding 8 (issue 12): only org admins and team admins manage a team."""
    alice, bob = new_user(cli, "alice"), new_user(cli, "bob")
    new_user(cli, "carol")
    assert "members: alice (admin)" in cli("team", "create", "ml", key=alice).stdout
    cli("team", "add", "ml", "bob", key=alice)
    refused = cli("team", "add", "ml", "carol", key=bob, code=1)
    assert "team role 'admin' in team 'ml'" in one_error_line(refused)
    cli("registry", "create", "vision")
    cli("registry", "member", "add", "vision", "ml", "--team", "--role", "member")
    out = cli("team", "add", "ml", "carol", "--admin", key=alice).stdout
    assert "carol (admin)" in out
    members = json.loads(cli("team", "members", "ml", "--json").stdout)
    assert members == [
        {"name": "alice", "role": "admin"},
        {"name": "bob", "role": "member"},
        {"name": "carol", "role": "admin"},
    ]
    cli("team", "role", "ml", "carol", "member", key=alice)
    cli("team", "rm", "ml", "carol", key=alice)
    last = cli("team", "rm", "ml", "alice", key=alice, code=1)
    assert "last admin of team 'ml'" in one_error_line(last)
    table = cli("team", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "ADMINS", "MEMBERS"]
    assert table[1].split(None, 2) == ["ml", "alice", "alice, bob"]
    history = json.loads(cli("history", "wandb-registry-vision", "--json").stdout)
    changes = [
        (e["actor"], e["details"]["change"], e["details"]["user"])
        for e in history
        if "change" in e["details"]
    ]
    assert changes == [
        ("alice", "team_remove", "carol"),
        ("alice", "team_role", "carol"),
        ("alice", "team_add", "carol"),
    ]


def test_r7_protected_alias_refused_to_a_member(cli: Cli, log_file: Callable[..., str]) -> None:
    dave = new_user(cli, "dave")
    cli("registry", "member", "add", "model", "dave", "--role", "member")
    cli("link", log_file("v0 weights"), "wandb-registry-model/zoo")
    out = cli("registry", "protect", "model", "production").stdout
    assert "production" in out

    refused = cli("alias", "add", "wandb-registry-model/zoo:v0", "production", key=dave, code=1)
    assert "admin" in one_error_line(refused)
    assert cli("alias", "add", "wandb-registry-model/zoo:v0", "staging", key=dave).exit_code == 0
    cli("alias", "add", "wandb-registry-model/zoo:v0", "production")  # an admin may
    aliases = json.loads(cli("ls", "wandb-registry-model/zoo", "--json").stdout)[0]["aliases"]
    assert sorted(aliases) == ["latest", "production", "staging"]

    cli("registry", "unprotect", "model", "production")
    cli("alias", "rm", "wandb-registry-model/zoo:v0", "production", key=dave)


def test_link_alias_get_ls_history_round_trip(
    cli: Cli, log_file: Callable[..., str], tmp_path: Path
) -> None:
    first = log_file("first weights")
    out = cli("link", first, "wandb-registry-model/zoo", "-a", "staging").stdout
    assert out.startswith("Linked admin/proj/zoo_data:v0 -> wandb-registry-model/zoo:v0")
    # R3: linking again keeps the number.
    assert "Already linked" in cli("link", first, "wandb-registry-model/zoo").stdout
    second = log_file("second weights")
    cli("link", second, "wandb-registry-model/zoo")
    cli("alias", "add", "wandb-registry-model/zoo:v1", "production", "staging")
    cli("alias", "rm", "wandb-registry-model/zoo:production", "production")

    got = cli("get", "wandb-registry-model/zoo:staging", "--root", str(tmp_path / "out"))
    assert got.stdout.strip() == str(tmp_path / "out")
    assert (tmp_path / "out" / "data.txt").read_text() == "second weights"

    files = json.loads(cli("ls", "wandb-registry-model/zoo:staging", "--json").stdout)
    assert files["version"]["index"] == 1
    assert [(f["path"], f["size"]) for f in files["files"]] == [("data.txt", 14)]
    assert files["files"][0]["digest"] == hashlib.sha256(b"second weights").hexdigest()
    human = cli("ls", "wandb-registry-model/zoo:v1").stdout
    assert "data.txt" in human and hashlib.sha256(b"second weights").hexdigest() in human

    versions = json.loads(cli("ls", "wandb-registry-model/zoo", "--json").stdout)
    assert [(v["index"], sorted(v["aliases"])) for v in versions] == [
        (1, ["latest", "staging"]),
        (0, []),
    ]
    colls = json.loads(cli("ls", "wandb-registry-model", "--json").stdout)
    assert [(c["name"], c["type"], c["version_count"]) for c in colls] == [("zoo", "dataset", 2)]

    events = json.loads(cli("history", "wandb-registry-model/zoo", "--json").stdout)
    moves = [(e["action"], e["alias"], e["version_index"]) for e in events]
    assert moves[0] == ("alias_remove", "production", 1)
    assert ("alias_add", "staging", 1) in moves and ("alias_add", "staging", 0) in moves
    assert moves[-1] == ("link", None, 0)
    assert (
        len(json.loads(cli("history", "wandb-registry-model", "--json", "--limit", "2").stdout))
        == 2
    )
    table = cli("history", "wandb-registry-model/zoo").stdout.splitlines()
    assert table[0].split()[:3] == ["TIME", "ACTOR", "ACTION"]


def test_invalid_names_print_the_rule_and_write_nothing(
    cli: Cli, log_file: Callable[..., str]
) -> None:
    before = cli("registry", "list", "--json").stdout
    bad = cli("registry", "create", "ml/vision", code=1)
    assert "may not contain / \\ # ? % :" in one_error_line(bad)
    assert cli("registry", "list", "--json").stdout == before

    bad = cli("user", "create", "bad name", code=1)
    assert "use only letters, digits" in one_error_line(bad)
    assert [u["name"] for u in json.loads(cli("user", "list", "--json").stdout)] == ["admin"]

    source = log_file("weights")
    bad = cli("link", source, "wandb-registry-model/zoo", "--alias", "latest", code=1)
    assert "managed by the registry" in one_error_line(bad)
    assert json.loads(cli("ls", "wandb-registry-model", "--json").stdout) == []
    assert json.loads(cli("history", "wandb-registry-model", "--json").stdout) == []
    bad = cli("history", "admin/proj/zoo_data", code=1)
    assert "registry path" in one_error_line(bad)


def test_cache_clean_frees_what_downloads_cached(
    cli: Cli, log_file: Callable[..., str], tmp_path: Path
) -> None:
    cli("link", log_file("cached weights"), "wandb-registry-model/zoo")
    cli("get", "wandb-registry-model/zoo", "--root", str(tmp_path / "a"))
    assert "Removed 0 files" in cli("cache", "clean", "--max-bytes", "1000000").stdout
    out = cli("cache", "clean").stdout
    assert out.startswith("Removed 1 files, freed 14 B (14 bytes)")
    assert "Removed 0 files" in cli("cache", "clean").stdout
    # The download still works: the cache is only a cache.
    cli("get", "wandb-registry-model/zoo", "--root", str(tmp_path / "b"))
    assert (tmp_path / "b" / "data.txt").read_text() == "cached weights"


def test_demo_logs_links_resolves_and_downloads(cli: Cli, workdir: Path) -> None:
    out = cli("demo").stdout.splitlines()
    assert [line[:3] for line in out[:4]] == ["1. ", "2. ", "3. ", "4. "]
    assert "production-us" in out[1]
    folder = workdir / "artifacts" / "Zoo_Classifier_Models:v0"
    assert sorted(p.name for p in folder.iterdir()) == ["zoo_dataset", "zoo_labels"]
    # Again: identical content is the same version (R10), already linked (R3).
    again = cli("demo").stdout
    assert "identical content" in again and "already linked" in again


def test_home_option_sets_where_regalia_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regalia.cli.main import cli as command

    for var in (
        "REGALIA_HOME",
        "REGALIA_DATABASE_URL",
        "REGALIA_CACHE_DIR",
        "REGALIA_BLOB_DIR",
        "REGALIA_ORG",
        "REGALIA_API_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "elsewhere"
    result = CliRunner().invoke(command, ["--home", str(home), "init"])
    assert result.exit_code == 0, result.output
    assert (home / "regalia.db").is_file()
    assert f"home: {home}" in result.stdout
