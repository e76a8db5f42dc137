"""Conformance of the official `wandb` client against `regalia server` (issue 14).

For each pinned release (the newest, and one from before 0.26 that probes the
schema by introspection), the seed document's two code examples run
*unchanged*: ``import wandb``, the placeholders filled, only ``WANDB_BASE_URL``
and ``WANDB_API_KEY`` set (``WANDB_MODE`` unset), in a client process of that
release's own virtualenv, against a real server on 127.0.0.1 on SQLite and on
PostgreSQL. Then Regalia's own SDK checks that the versions, aliases and files
are there, byte-identical, and the trace of what the client sent shows no
failed request (a failed request is what a client retries).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from test_seed import EXAMPLES, PLACEHOLDERS
from wandb_harness import RELEASES, client_env, run_script, start_server, trace, wandb_python

import regalia

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def example(number: int) -> str:
    """The seed's example as its document has it: ``import wandb``, placeholders filled."""
    text = (EXAMPLES / f"example_{number}.py").read_text(encoding="utf-8")
    text = text.replace("import regalia as wandb\n", "import wandb\n", 1)
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(f'"{placeholder}"', f'"{value}"')
    assert "import wandb\n" in text and '"<' not in text
    return text


def version_page(server, registry: str, collection: str, ref: str) -> str:
    """A version's page of the web UI, as the server's admin sees it in a browser."""
    with httpx.Client(base_url=server.url) as browser:
        form = browser.get("/login").text
        nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form).group(1)
        browser.post("/login", data={"api_key": server.api_key, "next": "/", "nonce": nonce})
        page = browser.get(f"/registries/{registry}/collections/{collection}/{ref}")
        assert page.status_code == 200, page.text[:500]
        return page.text


def failures(tmp_path: Path) -> list[dict]:
    """Requests the server refused or failed (telemetry the client ignores aside)."""
    return [
        e
        for e in trace(tmp_path)
        if e.get("status", 500) >= 400 and not e["path"].startswith("/sdk/otel")
    ]


@pytest.fixture
def regalia_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Regalia's own SDK, pointed at a server: ``regalia_api(server)``."""

    def make(server) -> regalia.Api:
        monkeypatch.setenv("REGALIA_BASE_URL", server.url)
        monkeypatch.setenv("REGALIA_API_KEY", server.api_key)
        monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "regalia-sdk"))
        monkeypatch.delenv("REGALIA_DATABASE_URL", raising=False)
        return regalia.Api()

    return make


@pytest.mark.parametrize("release", RELEASES)
def test_the_seed_examples_run_unchanged_with_import_wandb(
    release, db_kind, database_url, org_name, tmp_path, regalia_api
):
    python = wandb_python(release)
    # The PostgreSQL database is the session's: an organization of its own per
    # test, so that the server creates (and prints) a key for its owner.
    extra = (
        {"REGALIA_DATABASE_URL": database_url, "REGALIA_ORG": org_name}
        if db_kind == "postgresql"
        else {}
    )
    with start_server(tmp_path, **extra) as server:
        work = tmp_path / "work"
        work.mkdir()
        weights = bytes(range(256)) * 4096 + b"model"
        (work / "model.pt").write_bytes(weights)
        (work / "zoo_dataset.pt").write_bytes(b"zoo tensor 0" * 1000)
        (work / "zoo_labels.pt").write_bytes(b"labels 0" * 1000)
        env = client_env(tmp_path / "client", server, server.api_key)
        for number in (1, 2):
            done = run_script(python, example(number), env, work, timeout=180)
            assert done.returncode == 0, done.stderr[-3000:]
        assert failures(tmp_path) == []

        api = regalia_api(server)
        model = api.artifact("wandb-registry-model/Zoo_Models:best_model")
        assert (model.version, sorted(model.aliases)) == ("v0", ["best_model", "latest", "staging"])
        assert model.source_qualified_name == "smle-reg-team-2/zoo_experiment/zoo_model:v0"
        assert model.type == "model"
        out = Path(model.download(root=str(tmp_path / "out1")))
        assert (out / "model.pt").read_bytes() == weights

        data = api.artifact("wandb-registry-Model/Zoo_Classifier_Models:production-eu")
        assert sorted(data.aliases) == ["latest", "production-eu", "production-us"]
        assert data.type == "dataset"
        out = Path(data.download(root=str(tmp_path / "out2")))
        assert (out / "zoo_dataset").read_bytes() == b"zoo tensor 0" * 1000
        assert (out / "zoo_labels").read_bytes() == b"labels 0" * 1000
        sha = hashlib.sha256(b"labels 0" * 1000).hexdigest()
        assert {f.path: f.digest for f in data.files()}["zoo_labels"] == sha

        # The web UI shows the client's run as the version's source.
        page = version_page(server, "model", "Zoo_Models", "best_model")
        run = re.search(r"Logged by run: (.*?)</p>", page, re.S).group(1)
        assert "smle-reg-team-2/zoo_experiment/" in run and "(finished, exit code 0)" in run


@pytest.mark.parametrize("release", RELEASES)
def test_three_links_number_v0_v1_v2_and_a_relog_uploads_nothing(release, tmp_path, regalia_api):
    python = wandb_python(release)
    with start_server(tmp_path) as server:
        work = tmp_path / "work"
        work.mkdir()
        (work / "zoo_labels.pt").write_bytes(b"labels")
        env = client_env(tmp_path / "client", server, server.api_key)
        for i in range(3):
            (work / "zoo_dataset.pt").write_bytes(f"zoo tensor {i}".encode() * 100)
            done = run_script(python, example(2), env, work, timeout=180)
            assert done.returncode == 0, done.stderr[-3000:]
        before = len(trace(tmp_path))
        done = run_script(python, example(2), env, work, timeout=180)  # nothing changed
        assert done.returncode == 0, done.stderr[-3000:]
        relog = trace(tmp_path)[before:]
        assert [e for e in relog if e["method"] == "PUT" and "/artifact" in e["path"]] == []
        assert failures(tmp_path) == []

        api = regalia_api(server)
        coll = "wandb-registry-Model/Zoo_Classifier_Models"
        assert [api.artifact(f"{coll}:v{i}").version for i in range(3)] == ["v0", "v1", "v2"]
        assert api.artifact(f"{coll}:latest").version == "v2"
        assert api.artifact(f"{coll}:production-us").version == "v2"
        assert "latest" not in api.artifact(f"{coll}:v0").aliases
        with pytest.raises(regalia.errors.NotFound):
            api.artifact(f"{coll}:v3")


ADD_DIR = """
import wandb

run = wandb.init(entity="vision-team", project="zoo")
art = wandb.Artifact("zoo_tree", type="dataset")
art.add_dir("tree")
run.link_artifact(art, "wandb-registry-dataset/zoo_tree", aliases=["staging"])
run.finish()
"""

DOWNLOAD = """
import wandb

art = wandb.Api().artifact("wandb-registry-dataset/zoo_tree:staging")
art.download(root="got")
"""


@pytest.mark.parametrize("release", RELEASES)
def test_a_folder_added_with_add_dir_keeps_its_tree_both_ways(release, tmp_path, regalia_api):
    python = wandb_python(release)
    tree = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 64, "sub/deep/c.json": b"{}"}
    with start_server(tmp_path) as server:
        work = tmp_path / "work"
        for rel, data in tree.items():
            (work / "tree" / rel).parent.mkdir(parents=True, exist_ok=True)
            (work / "tree" / rel).write_bytes(data)
        env = client_env(tmp_path / "client", server, server.api_key)
        done = run_script(python, ADD_DIR, env, work, timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]

        version = regalia_api(server).artifact("wandb-registry-dataset/zoo_tree:staging")
        assert sorted(f.path for f in version.files()) == sorted(tree)
        out = Path(version.download(root=str(tmp_path / "sdk-out")))
        assert {rel: (out / rel).read_bytes() for rel in tree} == tree

        # Another machine (an empty cache) downloads the same tree with the client.
        other = client_env(tmp_path / "other", server, server.api_key)
        done = run_script(python, DOWNLOAD, other, tmp_path / "other-work", timeout=180)
        assert done.returncode == 0, done.stderr[-3000:]
        got = tmp_path / "other-work" / "got"
        assert {rel: (got / rel).read_bytes() for rel in tree} == tree
        assert failures(tmp_path) == []
