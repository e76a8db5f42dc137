"""Reading versions with the official `wandb` client (issue 14): versions
logged and linked with Regalia's own SDK over HTTP, read back with
``wandb.Api().artifact(path)`` (a registry path and a source path),
``.download()``, ``Api().artifact_exists`` and ``wandb artifact get``, in
each pinned client release, against a real ``regalia server``.

Every client machine has a fresh ``WANDB_CACHE_DIR``, so a download really
fetches the bytes (the client's cache would otherwise hide a bad URL).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servers import ServerProcess
from wandb_harness import (
    RELEASES,
    client_env,
    run_script,
    start_server,
    trace,
    wandb_python,
)
from wandb_harness import (
    run as run_command,
)

import regalia
from regalia.sdk.http import HttpBackend
from regalia.secretbox import KEY_FILE
from regalia.server.wandb.signing import UrlSigner

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TEAM = "smle-reg-team-2"
PROJECT = "zoo_experiment"
WEIGHTS = bytes(range(256)) * 512 + b"model"
NOTES = b"notes about the model\n"


@dataclass
class World:
    server: ServerProcess
    root: Path
    outsider_key: str  # an org member outside the restricted registry 'Vault'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One server, seeded through Regalia's SDK over HTTP: ``zoo_model`` v0 (two
    files, a tag, metadata) linked to ``wandb-registry-model/Zoo_Models`` with
    ``staging`` and ``best_model``, then v1 linked with ``candidate``; and a
    restricted registry ``Vault`` holding v0."""
    root = tmp_path_factory.mktemp("wandb-read")
    with start_server(root) as server, pytest.MonkeyPatch.context() as mp:
        assert server.api_key
        mp.setenv("REGALIA_BASE_URL", server.url)
        mp.setenv("REGALIA_API_KEY", server.api_key)
        mp.setenv("REGALIA_HOME", str(root / "regalia-sdk"))
        mp.delenv("REGALIA_DATABASE_URL", raising=False)
        work = root / "work"
        (work / "sub").mkdir(parents=True)
        (work / "model.pt").write_bytes(WEIGHTS)
        (work / "sub" / "notes.txt").write_bytes(NOTES)
        run = regalia.init(entity=TEAM, project=PROJECT)
        art = regalia.Artifact(
            name="zoo_model", type="model", description="a zoo model", metadata={"acc": 0.9}
        )
        art.add_file(local_path=str(work / "model.pt"))
        art.add_file(local_path=str(work / "sub" / "notes.txt"), name="sub/notes.txt")
        run.link_artifact(
            artifact=art,
            target_path="wandb-registry-model/Zoo_Models",
            aliases=["staging", "best_model"],
        )
        run.finish()
        (work / "v1.pt").write_bytes(b"second weights")
        run = regalia.init(entity=TEAM, project=PROJECT)
        art = regalia.Artifact(name="zoo_model", type="model")
        art.add_file(local_path=str(work / "v1.pt"), name="model.pt")
        run.link_artifact(
            artifact=art, target_path="wandb-registry-model/Zoo_Models", aliases=["candidate"]
        )
        run.finish()

        api = regalia.Api()
        v0 = api.artifact(f"{TEAM}/{PROJECT}/zoo_model:v0")
        v0.tags = ["vetted"]
        v0.save()
        admin = HttpBackend(server.url, server.api_key)
        admin.create_registry("Vault", visibility="restricted")
        api.artifact(f"{TEAM}/{PROJECT}/zoo_model:v0").link("wandb-registry-Vault/Secrets")
        _, outsider_key = admin.create_user("outsider")
        assert outsider_key
        yield World(server, root, outsider_key)


def client(world: World, release: str, code: str, name: str, key: str | None = None) -> str:
    """Run ``code`` in a fresh client machine of ``release``; its stdout."""
    home = world.root / f"{name}-{release}"
    env = client_env(home, world.server, key or world.server.api_key)
    done = run_script(wandb_python(release), code, env, home / "work", timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def failed(world: World) -> list[dict]:
    return [
        e
        for e in trace(world.root)
        if e.get("status", 500) >= 400 and not e["path"].startswith("/sdk/otel")
    ]


SHOW = """
import json, wandb
api = wandb.Api()
out = {}
for path in PATHS:
    a = api.artifact(path)
    out[path] = dict(
        version=a.version, aliases=sorted(a.aliases), tags=a.tags, type=a.type,
        metadata=a.metadata, description=a.description, source_name=a.source_name,
        source_qualified_name=a.source_qualified_name, qualified_name=a.qualified_name,
        name=a.name, entity=a.entity, project=a.project, is_link=a.is_link,
    )
print(json.dumps(out))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_api_artifact_by_registry_and_source_path(world, release):
    paths = [
        "wandb-registry-model/Zoo_Models:best_model",
        "wandb-registry-Model/Zoo_Models:v1",
        f"{TEAM}/{PROJECT}/zoo_model:v0",
        f"{TEAM}/{PROJECT}/zoo_model:latest",
    ]
    got = json.loads(client(world, release, f"PATHS = {paths!r}\n{SHOW}", "show").splitlines()[-1])

    best = got["wandb-registry-model/Zoo_Models:best_model"]
    assert best["version"] == "v0"
    assert best["aliases"] == ["best_model", "staging"]
    assert best["tags"] == ["vetted"]
    assert best["type"] == "model"
    assert best["metadata"] == {"acc": 0.9}
    assert best["description"] == "a zoo model"
    assert best["source_name"] == "zoo_model:v0"
    assert best["source_qualified_name"] == f"{TEAM}/{PROJECT}/zoo_model:v0"
    assert best["qualified_name"] == "regalia/wandb-registry-model/Zoo_Models:best_model"
    assert best["is_link"] is True

    v1 = got["wandb-registry-Model/Zoo_Models:v1"]
    assert (v1["version"], v1["aliases"], v1["tags"]) == ("v1", ["candidate", "latest"], [])
    assert v1["source_qualified_name"] == f"{TEAM}/{PROJECT}/zoo_model:v1"

    source = got[f"{TEAM}/{PROJECT}/zoo_model:v0"]
    assert (source["version"], source["aliases"], source["is_link"]) == ("v0", [], False)
    assert source["qualified_name"] == f"{TEAM}/{PROJECT}/zoo_model:v0"
    assert source["description"] == "a zoo model"
    latest = got[f"{TEAM}/{PROJECT}/zoo_model:latest"]
    assert (latest["version"], latest["aliases"]) == ("v1", ["latest"])
    assert failed(world) == []


EXISTS = """
import json, wandb
api = wandb.Api()
print(json.dumps({p: api.artifact_exists(p) for p in PATHS}))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_artifact_exists_and_a_restricted_registry_is_invisible(world, release):
    paths = [
        "wandb-registry-model/Zoo_Models:v0",
        "wandb-registry-model/Zoo_Models:v7",
        "wandb-registry-model/No_Such:v0",
        "wandb-registry-nope/Zoo_Models:v0",
        f"{TEAM}/{PROJECT}/zoo_model:v1",
        f"{TEAM}/{PROJECT}/zoo_model:v9",
        "wandb-registry-Vault/Secrets:v0",
    ]
    code = f"PATHS = {paths!r}\n{EXISTS}"
    owner = json.loads(client(world, release, code, "exists").splitlines()[-1])
    assert owner == dict(zip(paths, [True, False, False, False, True, False, True], strict=True))

    outsider = json.loads(
        client(world, release, code, "outsider", key=world.outsider_key).splitlines()[-1]
    )
    assert outsider["wandb-registry-model/Zoo_Models:v0"] is True  # an organization registry
    assert outsider["wandb-registry-Vault/Secrets:v0"] is False
    assert outsider[f"{TEAM}/{PROJECT}/zoo_model:v1"] is False  # not in the team

    code = (
        "import wandb\n"
        "try:\n"
        "    wandb.Api().artifact('wandb-registry-Vault/Secrets:v0')\n"
        "except Exception as exc:\n"
        "    print('ERROR', exc)\n"
    )
    out = client(world, release, code, "outsider-get", key=world.outsider_key)
    assert "ERROR" in out and "not found" in out
    assert "Vault" not in out.replace("wandb-registry-Vault", "")  # nothing more is said


DOWNLOAD = """
import json, os, wandb
a = wandb.Api().artifact(PATH)
root = a.download(root="out")
print(json.dumps({
    "root": os.path.abspath(root),
    "files": sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    ),
}))
"""


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "wandb-registry-model/Zoo_Models:best_model",
            {"model.pt": WEIGHTS, "sub/notes.txt": NOTES},
        ),
        (f"{TEAM}/{PROJECT}/zoo_model:v1", {"model.pt": b"second weights"}),
    ],
    ids=["registry", "source"],
)
def test_download_gives_the_same_bytes(world, release, path, expected):
    before = len(trace(world.root))
    name = "dl-" + path.split("/")[0].split("-")[-1]
    got = json.loads(client(world, release, f"PATH = {path!r}\n{DOWNLOAD}", name).splitlines()[-1])
    assert got["files"] == sorted(expected)
    for rel, data in expected.items():
        assert (Path(got["root"]) / rel).read_bytes() == data
    sent = trace(world.root)[before:]
    fetched = [e for e in sent if e["method"] == "GET" and e["path"].startswith("/wandb/files/")]
    assert len(fetched) == len(expected)  # a fresh cache: every file came over the wire
    assert all(not e["auth"] for e in fetched)  # the URLs authorize themselves
    assert failed(world) == []


FILE_URLS = """
query Urls($entity: String!, $project: String!, $collection: String!, $alias: String!) {
  project(name: $project, entityName: $entity) {
    artifactCollection(name: $collection) {
      artifactMembership(aliasName: $alias) {
        artifact { id currentManifest { file { directUrl } } }
        files(first: 1) { pageInfo { endCursor hasNextPage } edges { node { name directUrl } } }
      }
    }
  }
}
"""


def graphql(world: World, query: str, variables: dict) -> dict:
    answer = httpx.post(
        world.server.url + "/graphql",
        json={"query": query, "variables": variables},
        auth=("api", world.server.api_key or ""),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def test_signed_urls_serve_ranges_a_wandb_manifest_and_refuse_when_expired(world):
    found = graphql(
        world,
        FILE_URLS,
        {
            "entity": "regalia",
            "project": "wandb-registry-model",
            "collection": "Zoo_Models",
            "alias": "v0",
        },
    )["project"]["artifactCollection"]["artifactMembership"]
    page = found["files"]
    assert page["pageInfo"] == {"endCursor": "1", "hasNextPage": True}
    node = page["edges"][0]["node"]
    assert node["name"] == "model.pt"
    url = node["directUrl"]
    assert url.startswith(world.server.url + "/wandb/files/")

    whole = httpx.get(url, timeout=10)  # no credentials
    assert whole.status_code == 200 and whole.content == WEIGHTS
    part = httpx.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and part.content == WEIGHTS[10:20]

    manifest = httpx.get(found["artifact"]["currentManifest"]["file"]["directUrl"], timeout=10)
    assert manifest.status_code == 200
    body = manifest.json()
    assert body["storagePolicy"] == "wandb-storage-policy-v1"
    md5 = base64.b64encode(hashlib.md5(WEIGHTS).digest()).decode()
    assert body["contents"]["model.pt"] == {
        "digest": md5,
        "size": len(WEIGHTS),
        "birthArtifactID": found["artifact"]["id"],
    }
    assert (
        body["contents"]["sub/notes.txt"]["digest"]
        == base64.b64encode(hashlib.md5(NOTES).digest()).decode()
    )

    # A URL signed with the deployment's key but past its expiry, and a forged one.
    token = url.rsplit("/", 1)[1]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    signer = UrlSigner((world.root / "regalia" / KEY_FILE).read_bytes().strip())
    expired = signer.sign(claims.pop("p"), {k: v for k, v in claims.items() if k != "e"}, -5)
    refused = httpx.get(f"{world.server.url}/wandb/files/{expired}", timeout=10)
    assert refused.status_code == 403
    assert "expired" in refused.json()["error"]["message"]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    refused = httpx.get(f"{world.server.url}/wandb/files/{forged}", timeout=10)
    assert refused.status_code == 403
    assert "not one this server signed" in refused.json()["error"]["message"]


@pytest.mark.parametrize("release", RELEASES)
def test_wandb_artifact_get_on_the_command_line(world, release):
    home = world.root / f"cli-{release}"
    env = client_env(home, world.server, world.server.api_key)
    wandb = wandb_python(release).parent / "wandb"
    path = "wandb-registry-model/Zoo_Models:staging"
    done = run_command(
        wandb, ["artifact", "get", path, "--root", str(home / "out")], env, cwd=world.root
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (home / "out" / "model.pt").read_bytes() == WEIGHTS
    assert (home / "out" / "sub" / "notes.txt").read_bytes() == NOTES
    assert failed(world) == []
