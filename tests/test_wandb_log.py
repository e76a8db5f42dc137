"""Logging and linking versions with the `wandb` client (issue 14): what
``run.log_artifact`` and ``run.link_artifact`` send, against a real
``regalia server``.

The wire tests POST the client's own documents (as wandb-core 0.31.0 and
0.22.3 send them) and PUT to the URLs the server hands out, then check with
Regalia's SDK that the version the client made is Regalia's: same files and
bytes, aliases, run, registry rules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from wandb_harness import RELEASES, client_env, run_script, start_server, trace, wandb_python

import regalia
from regalia.config import Settings
from regalia.service import Service

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CREATE_ARTIFACT = """
mutation CreateArtifact ($input: CreateArtifactInput!) {
	createArtifact(input: $input) {
		... CreatedArtifact
	}
}
fragment CreatedArtifact on CreateArtifactPayload {
	artifact {
		id
		state
		artifactSequence {
			latestArtifact {
				id
			}
		}
	}
}
"""

CREATE_MANIFEST = """
mutation CreateArtifactManifest ($artifactID: ID!, $baseArtifactID: ID, $name: String!, $digest: String!, $entityName: String!, $projectName: String!, $runName: String!, $manifestType: ArtifactManifestType!, $includeUpload: Boolean!) {
	createArtifactManifest(input: {artifactID:$artifactID,baseArtifactID:$baseArtifactID,name:$name,digest:$digest,entityName:$entityName,projectName:$projectName,runName:$runName,type:$manifestType}) {
		artifactManifest {
			id
			file {
				id
				uploadUrl @include(if: $includeUpload)
				uploadHeaders @include(if: $includeUpload)
			}
		}
	}
}
"""  # noqa: E501

FILE_NODE = """
				node {
					storagePath
					uploadUrl
					uploadHeaders
					uploadMultipartUrls {
						uploadID
						uploadUrlParts {
							partNumber
							uploadUrl
						}
					}
					artifact {
						id
					}
				}
"""

CREATE_FILES_031 = (
    "mutation CreateArtifactFiles ($input: CreateArtifactFilesInput!) {\n"
    "\tcreateArtifactFiles(input: $input) {\n\t\tfiles {\n\t\t\tedges {"
    + FILE_NODE
    + "\t\t\t}\n\t\t}\n\t}\n}\n"
)
CREATE_FILES_022 = (
    "mutation CreateArtifactFiles ($artifactFiles: [CreateArtifactFileSpecInput!]!, "
    "$storageLayout: ArtifactStorageLayout!) {\n"
    "\tcreateArtifactFiles(input: {artifactFiles:$artifactFiles,storageLayout:$storageLayout}) {"
    "\n\t\tfiles {\n\t\t\tedges {" + FILE_NODE + "\t\t\t}\n\t\t}\n\t}\n}\n"
)

COMMIT = """
mutation CommitArtifact ($artifactID: ID!) {
	commitArtifact(input: {artifactID:$artifactID}) {
		artifact {
			id
			digest
		}
	}
}
"""

LINK = """
mutation LinkArtifact($input: LinkArtifactInput!, $includeAliases: Boolean = true) {
  result: linkArtifact(input: $input) {
    versionIndex
    artifactMembership @include(if: true) {
      __typename
      id
      versionIndex
      createdAt
      aliases { __typename id alias }
      artifactCollection { __typename name project { id internalId name entity { name } } }
      artifact {
        __typename
        id
        versionIndex
        state
        digest
        artifactType { name }
        artifactSequence { __typename name project { name entity { name } } }
        aliases @include(if: $includeAliases) { alias }
      }
    }
  }
}
"""

ARTIFACT_BY_ID = """
query ArtifactByID($id: ID!) {
  artifact(id: $id) { __typename id versionIndex state digest size fileCount
    artifactSequence { name } aliases { alias } }
}
"""

INPUT_FIELDS = """
query InputFields ($typeName: String!) {
	TypeInfo: __type(name: $typeName) {
		inputFields {
			name
		}
	}
}
"""


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def artifact_digest(files: dict[str, bytes]) -> str:
    """W&B's artifact digest: hex MD5 over the sorted ``path:b64md5`` lines."""
    h = hashlib.md5(b"wandb-artifact-manifest-v1\n")
    for path in sorted(files):
        h.update(f"{path}:{b64md5(files[path])}\n".encode())
    return h.hexdigest()


class Client:
    """What wandb-core sends, by hand: GraphQL with Basic api:KEY, PUTs without."""

    def __init__(self, url: str, key: str, release: str = "0.31.0") -> None:
        self.url, self.release = url, release
        self.http = httpx.Client(auth=("api", key), timeout=30)
        self.plain = httpx.Client(timeout=30)  # upload URLs carry their own authority

    def gql(self, query: str, variables: dict[str, Any], status: int = 200) -> dict[str, Any]:
        name = query.split("(")[0].split()[-1]
        r = self.http.post(
            self.url + "/graphql",
            json={"query": query, "variables": variables, "operationName": name},
        )
        assert r.status_code == status, r.text
        body = r.json()
        if status == 200:
            assert "errors" not in body, body
            return dict(body["data"])
        return dict(body)

    def create(
        self,
        entity: str,
        project: str,
        name: str,
        type_: str,
        files: dict[str, bytes],
        run: str | None = "run1",
        aliases: tuple[str, ...] = ("latest",),
        **extra: Any,
    ) -> dict[str, Any]:
        inp = {
            "entityName": entity,
            "projectName": project,
            "artifactTypeName": type_,
            "artifactCollectionName": name,
            "runName": run,
            "digest": artifact_digest(files),
            "digestAlgorithm": "MANIFEST_MD5",
            "description": None,
            "aliases": [{"artifactCollectionName": name, "alias": a} for a in aliases],
            "metadata": None,
            "ttlDurationSeconds": None,
            "historyStep": None,
            "enableDigestDeduplication": True,
            "distributedID": None,
            "clientID": "c" * 32,
            "sequenceClientID": "s" * 32,
            "storageRegion": None,
            **extra,
        }
        return self.gql(CREATE_ARTIFACT, {"input": inp})["createArtifact"]["artifact"]

    def manifest_url(
        self, art_id: str, entity: str, project: str, digest: str, include: bool
    ) -> dict[str, Any]:
        out = self.gql(
            CREATE_MANIFEST,
            {
                "artifactID": art_id,
                "baseArtifactID": None,
                "name": "wandb_manifest.json",
                "digest": digest,
                "entityName": entity,
                "projectName": project,
                "runName": "run1",
                "manifestType": "FULL",
                "includeUpload": include,
            },
        )
        return dict(out["createArtifactManifest"]["artifactManifest"])

    def file_urls(self, art_id: str, files: dict[str, bytes]) -> list[dict[str, Any]]:
        specs = [
            {
                "artifactID": art_id,
                "name": path,
                "md5": b64md5(data),
                "artifactManifestID": "bWFuaWZlc3Q=",
                "uploadPartsInput": None,
            }
            for path, data in files.items()
        ]
        if self.release == "0.22.3":
            out = self.gql(CREATE_FILES_022, {"artifactFiles": specs, "storageLayout": "V2"})
        else:
            out = self.gql(
                CREATE_FILES_031,
                {"input": {"artifactFiles": specs, "storageLayout": "V2"}},
            )
        return [e["node"] for e in out["createArtifactFiles"]["files"]["edges"]]

    def log(
        self, entity: str, project: str, name: str, type_: str, files: dict[str, bytes], **kw: Any
    ) -> tuple[str, int]:
        """The whole of ``run.log_artifact``: (artifact id, bytes PUT)."""
        art = self.create(entity, project, name, type_, files, **kw)
        if art["state"] == "COMMITTED":
            return art["id"], 0
        assert art["state"] == "PENDING"
        self.manifest_url(art["id"], entity, project, "", include=False)
        sent = 0
        for path, node in zip(files, self.file_urls(art["id"], files), strict=True):
            assert node["uploadMultipartUrls"] is None
            if node["uploadUrl"] is not None:
                assert "/artifact" in node["uploadUrl"]
                r = self.plain.put(node["uploadUrl"], content=files[path])
                assert r.status_code == 200, r.text
                sent += len(files[path])
        manifest = json.dumps(
            {
                "version": 1,
                "storagePolicy": "wandb-storage-policy-v1",
                "storagePolicyConfig": {"storageLayout": "V2"},
                "contents": {
                    p: {
                        "digest": b64md5(d),
                        "size": len(d),
                        "birthArtifactID": art["id"],
                        "local_path": f"/tmp/{p}",
                        "skip_cache": False,
                    }
                    for p, d in files.items()
                },
            }
        ).encode()
        up = self.manifest_url(art["id"], entity, project, b64md5(manifest), include=True)
        r = self.plain.put(up["file"]["uploadUrl"], content=manifest)
        assert r.status_code == 200, r.text
        committed = self.gql(COMMIT, {"artifactID": art["id"]})["commitArtifact"]["artifact"]
        assert committed["digest"]
        return art["id"], sent

    def link(
        self,
        art_id: str,
        registry: str,
        collection: str,
        aliases: list[str],
        status: int = 200,
        org: str = "default",
    ) -> dict[str, Any]:
        inp = {
            "artifactID": art_id,
            "artifactPortfolioName": collection,
            "entityName": org,
            "projectName": f"wandb-registry-{registry}",
            "aliases": [{"artifactCollectionName": collection, "alias": a} for a in aliases],
        }
        out = self.gql(LINK, {"input": inp}, status)
        return out["result"] if status == 200 else out


@pytest.fixture
def server(tmp_path: Path):
    """A server on SQLite (for the real client's tests)."""
    with start_server(tmp_path) as srv:
        yield srv


@pytest.fixture
def wire(db_kind: str, database_url: str, org_name: str, tmp_path: Path, monkeypatch):
    """A server on SQLite, then on PostgreSQL (an organization of its own in the
    session's database); the test's REGALIA_* environment points at its store."""
    extra = (
        {"REGALIA_DATABASE_URL": database_url, "REGALIA_ORG": org_name}
        if db_kind == "postgresql"
        else {}
    )
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    with start_server(tmp_path, **extra) as srv:
        yield srv


def sdk(server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> regalia.Api:
    """Regalia's own SDK against the same server."""
    monkeypatch.setenv("REGALIA_BASE_URL", server.url)
    monkeypatch.setenv("REGALIA_API_KEY", server.api_key)
    monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "regalia-sdk"))
    monkeypatch.delenv("REGALIA_DATABASE_URL", raising=False)
    return regalia.Api()


@pytest.fixture
def api(server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> regalia.Api:
    return sdk(server, monkeypatch, tmp_path)


@pytest.fixture
def wire_api(wire, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> regalia.Api:
    return sdk(wire, monkeypatch, tmp_path)


def store_of(tmp_path: Path) -> Service:
    """The server's store, opened beside it (users, roles, protected aliases)."""
    return Service(Settings.from_env(tmp_path / "regalia"))


def traced(tmp_path: Path, count: int) -> list[dict[str, Any]]:
    """The trace once it holds ``count`` requests (it is written as answers go out)."""
    deadline = time.monotonic() + 5
    while len(entries := trace(tmp_path)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return entries


def org_of(server) -> str:
    r = httpx.post(
        server.url + "/graphql",
        auth=("api", server.api_key),
        json={"query": "{ viewer { organizations { name } } }"},
    )
    return str(r.json()["data"]["viewer"]["organizations"][0]["name"])


@pytest.mark.parametrize("release", ["0.31.0", "0.22.3"])
def test_a_logged_and_linked_artifact_is_a_regalia_version(wire, wire_api, tmp_path, release):
    client = Client(wire.url, wire.api_key, release)
    files = {"model.pt": bytes(range(256)) * 64, "cfg/params.json": b'{"lr": 0.1}'}
    art_id, sent = client.log("admin", "zoo", "zoo_model", "model", files)
    assert sent == sum(map(len, files.values()))

    src = wire_api.artifact("admin/zoo/zoo_model:latest")
    assert (src.version, src.type) == ("v0", "model")
    assert {f.path: f.digest for f in src.files()} == {
        p: hashlib.sha256(d).hexdigest() for p, d in files.items()
    }
    out = Path(src.download(root=str(tmp_path / "src")))
    assert (out / "cfg/params.json").read_bytes() == files["cfg/params.json"]

    # The id createArtifact gave names the committed version from then on.
    got = client.gql(ARTIFACT_BY_ID, {"id": art_id})["artifact"]
    assert (got["state"], got["versionIndex"], got["fileCount"]) == ("COMMITTED", 0, 2)

    org = org_of(wire)
    linked = client.link(art_id, "Model", "Zoo_Models", ["staging", "latest"], org=org)
    assert linked["versionIndex"] == 0
    membership = linked["artifactMembership"]
    assert membership["artifactCollection"]["name"] == "Zoo_Models"
    assert membership["artifactCollection"]["project"]["name"] == "wandb-registry-model"
    assert sorted(a["alias"] for a in membership["aliases"]) == ["latest", "staging"]
    assert membership["artifact"]["artifactSequence"]["name"] == "zoo_model"

    reg = wire_api.artifact("wandb-registry-model/Zoo_Models:staging")
    assert (reg.version, sorted(reg.aliases)) == ("v0", ["latest", "staging"])
    assert reg.source_qualified_name == "admin/zoo/zoo_model:v0"


def test_relogging_the_same_files_answers_the_committed_version_and_sends_nothing(
    wire, wire_api, tmp_path
):
    client = Client(wire.url, wire.api_key)
    files = {"data.bin": b"zoo tensor" * 500}
    first, sent = client.log("admin", "zoo", "zoo_dataset", "dataset", files)
    assert sent == 5000
    before = len(traced(tmp_path, 7))  # the whole first log, trace written
    again, sent = client.log("admin", "zoo", "zoo_dataset", "dataset", files)
    assert sent == 0
    assert [e["operation"] for e in traced(tmp_path, before + 1)[before:]] == ["CreateArtifact"]
    assert client.gql(ARTIFACT_BY_ID, {"id": again})["artifact"]["versionIndex"] == 0
    assert wire_api.artifact("admin/zoo/zoo_dataset:latest").version == "v0"
    with pytest.raises(regalia.errors.NotFound):
        wire_api.artifact("admin/zoo/zoo_dataset:v1")


def test_content_already_stored_is_not_sent_again_in_a_new_version(wire, wire_api):
    client = Client(wire.url, wire.api_key)
    shared = b"labels" * 1000
    client.log("admin", "zoo", "zoo_dataset", "dataset", {"labels": shared, "a": b"one"})
    _, sent = client.log("admin", "zoo", "zoo_dataset", "dataset", {"labels": shared, "a": b"two"})
    assert sent == 3  # only the changed file
    v1 = wire_api.artifact("admin/zoo/zoo_dataset:v1")
    assert {f.path: f.size for f in v1.files()} == {"labels": 6000, "a": 3}


def test_content_another_user_stored_is_still_uploaded_and_reveals_nothing(wire, tmp_path):
    """SPEC §7: knowing a content's MD5 does not make it yours. Bob, who may not
    download admin's version, is asked to send the bytes (an upload URL, as for
    content never stored), and his version holds what he sent."""
    secret = b"admin's private weights" * 100
    Client(wire.url, wire.api_key).log("admin", "private", "m", "model", {"w.bin": secret})
    svc = store_of(tmp_path)
    try:
        _, key = svc.create_user(svc.ensure_org(), "bob")
    finally:
        svc.close()
    assert key is not None
    bob = Client(wire.url, key)
    files = {"w.bin": secret}
    art = bob.create("bob", "mine", "m", "model", files)
    assert art["state"] == "PENDING"  # not answered with admin's committed version
    (node,) = bob.file_urls(art["id"], files)
    assert node["uploadUrl"] is not None  # the same answer as for content never stored
    _, sent = bob.log("bob", "mine", "m2", "model", files)
    assert sent == len(secret)


def test_a_body_whose_md5_is_not_the_announced_one_is_refused(wire, wire_api):
    client = Client(wire.url, wire.api_key)
    files = {"model.pt": b"the real weights"}
    art = client.create("admin", "zoo", "m", "model", files)
    (node,) = client.file_urls(art["id"], files)
    r = client.plain.put(node["uploadUrl"], content=b"something else")
    assert r.status_code == 400
    assert "MD5" in r.json()["error"]["message"]
    # A forged or truncated URL authorizes nothing.
    r = client.plain.put(node["uploadUrl"][:-3] + "abc", content=b"the real weights")
    assert r.status_code == 403


def test_commit_refuses_a_file_that_was_never_uploaded(wire):
    client = Client(wire.url, wire.api_key)
    files = {"model.pt": b"never sent"}
    art = client.create("admin", "zoo", "m", "model", files)
    manifest = json.dumps(
        {"version": 1, "contents": {"model.pt": {"digest": b64md5(b"never sent"), "size": 10}}}
    ).encode()
    up = client.manifest_url(art["id"], "admin", "zoo", b64md5(manifest), include=True)
    assert client.plain.put(up["file"]["uploadUrl"], content=manifest).status_code == 200
    out = client.gql(COMMIT, {"artifactID": art["id"]}, status=400)
    assert "has not been uploaded by you" in out["errors"][0]["message"]


def test_three_links_are_v0_v1_v2_with_latest_on_the_last(wire, wire_api):
    client = Client(wire.url, wire.api_key)
    org = org_of(wire)
    for i in range(3):
        art_id, _ = client.log("admin", "zoo", "ds", "dataset", {"d": f"tensor {i}".encode()})
        linked = client.link(art_id, "model", "Zoo_Classifier_Models", ["production-us"], org=org)
        assert linked["versionIndex"] == i
    coll = "wandb-registry-model/Zoo_Classifier_Models"
    assert wire_api.artifact(f"{coll}:latest").version == "v2"
    assert wire_api.artifact(f"{coll}:production-us").version == "v2"
    assert "latest" not in wire_api.artifact(f"{coll}:v0").aliases


def test_a_member_may_not_link_with_a_protected_alias(wire, tmp_path):
    svc = store_of(tmp_path)
    try:
        owner = svc.ensure_org()
        _, key = svc.create_user(owner, "mia")
        svc.set_registry_role(owner, "model", user="mia", role="member")
        svc.protect_alias(owner, "model", "production")
    finally:
        svc.close()
    assert key is not None
    client = Client(wire.url, key)
    art_id, _ = client.log("mia", "zoo", "m", "model", {"w": b"weights"})
    out = client.link(art_id, "model", "Zoo", ["production"], status=403, org=org_of(wire))
    message = out["errors"][0]["message"]
    assert "registry role 'admin'" in message and "protected aliases" in message
    assert client.link(art_id, "model", "Zoo", ["staging"], org=org_of(wire))["versionIndex"] == 0


def test_create_artifact_input_lists_every_field_the_clients_send(wire):
    client = Client(wire.url, wire.api_key)
    out = client.gql(INPUT_FIELDS, {"typeName": "CreateArtifactInput"})
    names = {f["name"] for f in out["TypeInfo"]["inputFields"]}
    sent = {
        "aliases", "artifactCollectionName", "artifactCollectionNames", "artifactTypeName",
        "clientID", "clientMutationId", "description", "digest", "digestAlgorithm",
        "distributedID", "enableDigestDeduplication", "entityName", "historyStep", "labels",
        "metadata", "projectName", "runName", "sequenceClientID", "storageRegion", "tags",
        "ttlDurationSeconds",
    }  # fmt: skip
    assert sent <= names


# -- the real client ------------------------------------------------------------------------
LOG_AND_LINK = """
import wandb

run = wandb.init(entity="admin", project="zoo")
art = wandb.Artifact(name="zoo_model", type="model", description="a zoo", metadata={"acc": 0.9})
art.add_file(local_path="model.pt")
art.add_file(local_path="notes.txt", name="docs/notes.txt")
run.log_artifact(art, aliases=["candidate"], tags=["zoo"])
art.wait()
print("LOGGED", run.id, art.version)
run.link_artifact(art, "wandb-registry-Model/Zoo_Models", aliases=["staging"])
run.finish()
"""


DOWNLOAD = """
import wandb
art = wandb.Api().artifact("wandb-registry-model/Zoo_Models:staging")
print("AT", art.download(root="out"))
"""


@pytest.fixture(params=RELEASES)
def release(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_client_logs_and_links_a_version_regalia_shows(release, server, api, tmp_path):
    python = wandb_python(release)
    work = tmp_path / "work"
    work.mkdir()
    weights = bytes(range(256)) * 2048
    (work / "model.pt").write_bytes(weights)
    (work / "notes.txt").write_text("trained on the zoo")
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, LOG_AND_LINK, env, work, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id, version = done.stdout.split("LOGGED ")[1].split()[:2]
    assert version == "v0"

    src = api.artifact("admin/zoo/zoo_model:candidate")
    assert (src.version, sorted(src.aliases)) == ("v0", ["candidate", "latest"])
    assert (src.description, src.metadata, src.tags) == ("a zoo", {"acc": 0.9}, ["zoo"])
    assert src.logged_by() == run_id  # lineage: the W&B run is the version's run
    linked = api.artifact("wandb-registry-model/Zoo_Models:staging")
    assert (linked.version, sorted(linked.aliases)) == ("v0", ["latest", "staging"])
    assert linked.source_qualified_name == "admin/zoo/zoo_model:v0"
    out = Path(linked.download(root=str(tmp_path / "out")))
    assert (out / "model.pt").read_bytes() == weights
    assert (out / "docs/notes.txt").read_text() == "trained on the zoo"
    refused = [e for e in trace(tmp_path) if e.get("status", 200) >= 400]
    assert [e for e in refused if not e["path"].startswith("/sdk/otel")] == []

    # Another machine (an empty cache) downloads it with the client: W&B's MD5s check out.
    fresh = client_env(tmp_path / "elsewhere", server, server.api_key)
    done = run_script(python, DOWNLOAD, fresh, tmp_path / "elsewhere", timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    got = tmp_path / "elsewhere" / done.stdout.split("AT ")[1].strip()
    assert (got / "model.pt").read_bytes() == weights
    assert (got / "docs/notes.txt").read_text() == "trained on the zoo"

    # The same files again: the client learns the version exists and sends nothing.
    before = len(trace(tmp_path))
    done = run_script(python, LOG_AND_LINK, env, work, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("LOGGED ")[1].split()[1] == "v0"
    again = trace(tmp_path)[before:]
    assert [e for e in again if e["method"] == "PUT" and "/artifact" in e["path"]] == []
    assert "CommitArtifact" not in [e.get("operation") for e in again]
    assert api.artifact("wandb-registry-model/Zoo_Models:latest").version == "v0"


PROTECTED_LINK = """
import wandb

run = wandb.init(entity="mia", project="zoo")
art = wandb.Artifact(name="m", type="model")
art.add_file(local_path="model.pt")
run.link_artifact(art, "wandb-registry-model/Zoo", aliases=["production"])
run.finish()
"""


def test_a_member_linking_a_protected_alias_fails_in_the_client_with_regalias_message(
    release, server, tmp_path
):
    svc = store_of(tmp_path)
    try:
        owner = svc.ensure_org()
        _, key = svc.create_user(owner, "mia")
        svc.set_registry_role(owner, "model", user="mia", role="member")
        svc.protect_alias(owner, "model", "production")
    finally:
        svc.close()
    assert key is not None
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.pt").write_bytes(b"weights")
    env = client_env(tmp_path / "client", server, key)
    started = time.monotonic()
    done = run_script(wandb_python(release), PROTECTED_LINK, env, work, timeout=180)
    assert time.monotonic() - started < 90  # refused at once: no retry loop
    assert done.returncode != 0
    assert "you need the registry role 'admin' in registry 'model'" in done.stderr
    links = [e for e in trace(tmp_path) if e.get("operation") == "LinkArtifact"]
    # Refused once: a 403, or a 400 to releases whose public API would print a
    # text of its own for a 403 (graphql.refusal_status).
    assert [e["status"] for e in links] == [403 if release >= "0.26" else 400]


def test_a_file_larger_than_a_json_body_uploads_in_one_put(wire, wire_api):
    client = Client(wire.url, wire.api_key)
    big = bytes(range(256)) * (17 * 4096)  # 17 MiB: past the server's JSON body limit
    _, sent = client.log("admin", "zoo", "big", "dataset", {"big.bin": big})
    assert sent == len(big)
    (entry,) = wire_api.artifact("admin/zoo/big:v0").files()
    assert (entry.size, entry.digest) == (len(big), hashlib.sha256(big).hexdigest())


REFERENCES = """
import wandb

run = wandb.init(entity="admin", project="zoo")
art = wandb.Artifact(name="refs", type="dataset")
art.add_reference("https://example.com/data.csv", name="data.csv", checksum=False)
run.log_artifact(art)
art.wait()
"""


def test_references_are_refused_at_commit_with_a_reason(server, tmp_path):
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(wandb_python(), REFERENCES, env, tmp_path / "work", timeout=180)
    assert done.returncode != 0
    assert "add_reference" in done.stderr


def test_drafts_never_committed_are_swept_after_the_grant_lifetime(service, owner, clock):
    kept = service.create_wandb_draft(
        owner, entity="admin", project="zoo", name="m", type="model", digest="0" * 32
    )
    assert service.expire_wandb_drafts() == 0
    clock.advance(days=8)
    assert service.expire_wandb_drafts() == 1
    with pytest.raises(regalia.errors.NotFound):
        service.wandb_draft(owner, kept.wire_id)


def test_content_either_client_logged_is_one_version_and_one_blob(wire, wire_api, tmp_path):
    """Regalia's SDK logs a file; the wandb client logging the same file sends
    nothing (the server learns the MD5s of the artifact's latest version) and
    gets the same version (R10); a new artifact holding it sends nothing."""
    data = b"shared weights" * 100
    (tmp_path / "w.bin").write_bytes(data)
    run = regalia.init(entity="admin", project="zoo")
    art = regalia.Artifact("shared", "model")
    art.add_file(str(tmp_path / "w.bin"), name="w.bin")
    run.log_artifact(art)
    run.finish()
    assert wire_api.artifact("admin/zoo/shared:latest").version == "v0"

    client = Client(wire.url, wire.api_key)
    art_id, sent = client.log("admin", "zoo", "shared", "model", {"w.bin": data})
    assert sent == 0  # the server learnt the MD5s of the latest version's files
    assert client.gql(ARTIFACT_BY_ID, {"id": art_id})["artifact"]["versionIndex"] == 0
    with pytest.raises(regalia.errors.NotFound):
        wire_api.artifact("admin/zoo/shared:v1")
    _, sent = client.log("admin", "zoo", "other", "model", {"weights/w.bin": data})
    assert sent == 0
    (entry,) = wire_api.artifact("admin/zoo/other:v0").files()
    assert entry.digest == hashlib.sha256(data).hexdigest()


def test_logging_under_another_type_is_refused_before_any_upload(wire):
    client = Client(wire.url, wire.api_key)
    client.log("admin", "zoo", "zoo_model", "model", {"w": b"weights"})
    r = client.http.post(
        wire.url + "/graphql",
        json={
            "query": CREATE_ARTIFACT,
            "variables": {
                "input": {
                    "entityName": "admin",
                    "projectName": "zoo",
                    "artifactTypeName": "dataset",
                    "artifactCollectionName": "zoo_model",
                    "digest": artifact_digest({"w": b"other"}),
                }
            },
        },
    )
    assert r.status_code == 409
    assert "has type 'model'" in r.json()["errors"][0]["message"]
