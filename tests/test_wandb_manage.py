"""The official `wandb` client changing what Regalia's own SDK logged and linked
(issue 14): ``artifact.save()`` after alias, tag, description and metadata
edits, ``unlink()``, ``delete()``, and the registries API
(``Api().registries(filter=...)`` -> ``.collections()`` -> ``.versions()``,
``Api().create_registry(...)``).

Versions are seeded with Regalia's SDK through a real ``regalia server``; the
client's requests are either the real client of each pinned release, or (for
the mutations, where fetching the artifact is another module's work) POSTs
shaped exactly like the client's documents (``ADD_ALIASES_GQL`` and the others
of ``wandb/sdk/artifacts/_generated/operations.py``). Whatever the client
changes follows Regalia's rules, the same as the SDK's: protected aliases,
roles, history, automations; a refusal is Regalia's message with its status,
which the client does not retry.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from automation_helpers import Receiver
from servers import ServerProcess
from test_wandb_conformance import example
from wandb_harness import RELEASES, client_env, run_script, start_server, trace, wandb_python

import regalia
from regalia.sdk.http import HttpBackend

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# -- the client's documents (wandb 0.31.0, sdk/artifacts/_generated/operations.py) ----

ADD_ALIASES = """
mutation AddAliases($input: AddAliasesInput!) {
  result: addAliases(input: $input) { success }
}"""

DELETE_ALIASES = """
mutation DeleteAliases($input: DeleteAliasesInput!) {
  result: deleteAliases(input: $input) { success }
}"""

UPDATE_ARTIFACT = """
mutation UpdateArtifact($input: UpdateArtifactInput!, $includeAliases: Boolean = true) {
  result: updateArtifact(input: $input) { artifact { ...ArtifactFragment } }
}
fragment ArtifactAliasFragment on ArtifactAlias { __typename id alias }
fragment ArtifactFragment on Artifact {
  __typename id
  artifactSequence { ...SourceCollectionInfoFragment }
  versionIndex artifactType { name } description metadata ttlDurationSeconds
  ttlIsInherited tags { ...TagFragment } historyStep state size digest
  digestAlgorithm @include(if: true) commitHash fileCount createdAt updatedAt
  aliases @include(if: $includeAliases) {
    artifactCollection { ...CollectionInfoFragment }
    ...ArtifactAliasFragment
  }
}
fragment CollectionInfoFragment on ArtifactCollection {
  __typename name project { ...ProjectInfoFragment }
}
fragment ProjectInfoFragment on Project { id internalId name entity { name } }
fragment SourceCollectionInfoFragment on ArtifactSequence {
  __typename name project { ...ProjectInfoFragment }
}
fragment TagFragment on Tag { __typename id name }
"""

UNLINK_ARTIFACT = """
mutation UnlinkArtifact($input: UnlinkArtifactInput!) {
  result: unlinkArtifact(input: $input) { success }
}"""

DELETE_ARTIFACT = """
mutation DeleteArtifact($input: DeleteArtifactInput!) {
  result: deleteArtifact(input: $input) { artifact { id } }
}"""

IS_PROJECT_READ_ONLY = """
query IsProjectReadOnly($entity: String!, $project: String!) {
  project(entityName: $entity, name: $project) { readOnly }
}"""

PROJECT_ARTIFACT_COLLECTION = """
query ProjectArtifactCollection($entity: String!, $project: String!, $type: String!,
                                $name: String!) {
  project(entityName: $entity, name: $project) {
    artifactType(name: $type) {
      artifactCollection(name: $name) {
        __typename id name description createdAt updatedAt
        project { id internalId name entity { name } }
        type: defaultArtifactType { name }
        tags { edges { node { __typename id name } } }
      }
    }
  }
}"""


def wandb_id(kind: str, key: int) -> str:
    return base64.b64encode(f"{kind}:{key}".encode()).decode()


class Wire:
    """POSTs to /graphql as the client sends them (Basic ``api:KEY``)."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self.url = server.url + "/graphql"
        self.auth = ("api", key)

    def __call__(self, query: str, operation: str, **variables: Any) -> httpx.Response:
        body = {"query": query, "operationName": operation, "variables": variables}
        return httpx.post(self.url, json=body, auth=self.auth, timeout=30)

    def ok(self, query: str, operation: str, **variables: Any) -> dict[str, Any]:
        r = self(query, operation, **variables)
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        return r.json()["data"]


def refused(tmp_path: Path) -> list[dict[str, Any]]:
    """Requests of the client the server refused or failed (telemetry aside)."""
    return [
        e
        for e in trace(tmp_path)
        if e.get("status", 500) >= 400 and not e["path"].startswith("/sdk/otel")
    ]


# -- seeding with Regalia's own SDK ---------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path):
    with start_server(tmp_path, REGALIA_AUTOMATION_ALLOW_PRIVATE="1") as s:
        yield s


@pytest.fixture
def sdk(server: ServerProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> regalia.Api:
    """Regalia's SDK as the server's owner (an org admin)."""
    monkeypatch.setenv("REGALIA_BASE_URL", server.url)
    monkeypatch.setenv("REGALIA_API_KEY", server.api_key)
    monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "regalia-sdk"))
    monkeypatch.delenv("REGALIA_DATABASE_URL", raising=False)
    return regalia.Api()


def log_and_link(
    tmp_path: Path, content: str, target: str, aliases: list[str], **kw: Any
) -> regalia.Artifact:
    """A version logged to team/zoo/net by the owner and linked to ``target``."""
    f = tmp_path / f"w-{abs(hash(content))}.bin"
    f.write_text(content)
    run = regalia.init(entity="team", project="zoo")
    art = regalia.Artifact("net", type="model", **kw)
    art.add_file(str(f), name="weights.bin")
    linked = run.link_artifact(art, target, aliases=aliases)
    run.finish()
    return linked


def backend(sdk: regalia.Api) -> HttpBackend:
    return sdk._backend  # type: ignore[return-value]


def member(sdk: regalia.Api, name: str, registry: str, role: str = "member") -> str:
    """A new user with ``role`` in ``registry``; their API key."""
    _, key = backend(sdk).create_user(name, org_role="viewer")
    assert key is not None
    sdk.registry(registry).add_member(name, role=role)
    return key


def ids(linked: regalia.Artifact) -> tuple[int, int]:
    """(source version id, registry collection id) of a link, as W&B ids carry them."""
    view = linked._view  # type: ignore[attr-defined]
    return view.version_id, view.collection.id


def aliases_input(version_id: int, org: str, coll: str, *names: str) -> dict[str, Any]:
    return {
        "artifactID": wandb_id("Artifact", version_id),
        "aliases": [
            {
                "entityName": org,
                "projectName": "wandb-registry-model",
                "artifactCollectionName": coll,
                "alias": n,
            }
            for n in names
        ],
    }


def org_of(server: ServerProcess) -> str:
    data = Wire(server, server.api_key).ok(
        "query { viewer { organizations { name } } }",
        None,  # type: ignore[arg-type]
    )
    return data["viewer"]["organizations"][0]["name"]


# -- aliases, tags, description, metadata (wire) --------------------------------------------


def test_add_aliases_moves_an_alias_with_registry_rules_and_history(server, sdk, tmp_path):
    v0 = log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["staging"])
    v1 = log_and_link(tmp_path, "w1", "wandb-registry-model/Coll", [])
    org = org_of(server)
    wire = Wire(server, server.api_key)
    version_id, _ = ids(v1)
    data = wire.ok(
        ADD_ALIASES, "AddAliases", input=aliases_input(version_id, org, "Coll", "staging")
    )
    assert data == {"result": {"success": True}}
    assert sdk.artifact("wandb-registry-model/Coll:staging").version == "v1"
    assert "staging" not in sdk.artifact("wandb-registry-model/Coll:v0").aliases
    moves = [h for h in sdk.registry("model").history() if h.action == "alias_add"]
    assert moves[0].alias == "staging" and moves[0].details.get("from_index") == 0
    assert v0.version == "v0"

    latest = wire(ADD_ALIASES, "AddAliases", input=aliases_input(version_id, org, "Coll", "latest"))
    assert latest.status_code == 400 and "latest" in latest.json()["errors"][0]["message"]
    data = wire.ok(
        DELETE_ALIASES, "DeleteAliases", input=aliases_input(version_id, org, "Coll", "staging")
    )
    assert data == {"result": {"success": True}}
    assert sorted(sdk.artifact("wandb-registry-model/Coll:v1").aliases) == ["latest"]


def test_a_member_adding_a_protected_alias_gets_regalias_403_and_nothing_changes(
    server, sdk, tmp_path
):
    linked = log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", [])
    sdk.registry("model").protect_alias("production")
    key = member(sdk, "mia", "model")
    version_id, _ = ids(linked)
    r = Wire(server, key)(
        ADD_ALIASES,
        "AddAliases",
        input=aliases_input(version_id, org_of(server), "Coll", "production"),
    )
    assert r.status_code == 403
    error = r.json()["errors"][0]
    assert "admin" in error["message"] and error["extensions"]["code"] == "permission_denied"
    assert "production" not in sdk.artifact("wandb-registry-model/Coll:v0").aliases
    # an ordinary alias is a member's to add
    r = Wire(server, key)(
        ADD_ALIASES,
        "AddAliases",
        input=aliases_input(version_id, org_of(server), "Coll", "candidate"),
    )
    assert r.status_code == 200, r.text
    assert "candidate" in sdk.artifact("wandb-registry-model/Coll:v0").aliases


def test_update_artifact_edits_tags_description_and_metadata_of_the_version(server, sdk, tmp_path):
    linked = log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", [], metadata={"acc": 0.5})
    version_id, _ = ids(linked)
    wire = Wire(server, server.api_key)
    data = wire.ok(
        UPDATE_ARTIFACT,
        "UpdateArtifact",
        input={
            "artifactID": wandb_id("Artifact", version_id),
            "description": "the best net",
            "metadata": json.dumps({"acc": 0.9}),
            "ttlDurationSeconds": None,
            "tagsToAdd": [{"tagName": "prod"}],
            "tagsToDelete": [],
        },
    )
    art = data["result"]["artifact"]
    assert art["description"] == "the best net" and json.loads(art["metadata"]) == {"acc": 0.9}
    assert [t["name"] for t in art["tags"]] == ["prod"]
    seen = sdk.artifact("wandb-registry-model/Coll:v0")
    assert (seen.description, seen.metadata, seen.tags) == ("the best net", {"acc": 0.9}, ["prod"])
    wire.ok(
        UPDATE_ARTIFACT,
        "UpdateArtifact",
        input={
            "artifactID": wandb_id("Artifact", version_id),
            "tagsToDelete": [{"tagName": "prod"}],
        },
    )
    assert sdk.artifact("team/zoo/net:v0").tags == []
    # the client asks whether it may edit the source before it sends updateArtifact
    assert wire.ok(IS_PROJECT_READ_ONLY, "IsProjectReadOnly", entity="team", project="zoo") == {
        "project": {"readOnly": False}
    }


# -- unlink, delete (wire) --------------------------------------------------------------------


def test_unlink_removes_the_link_and_keeps_the_source(server, sdk, tmp_path):
    linked = log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["staging"])
    version_id, collection_id = ids(linked)
    wire = Wire(server, server.api_key)
    # the client reads the collection's id first (artifact.collection)
    found = wire.ok(
        PROJECT_ARTIFACT_COLLECTION,
        "ProjectArtifactCollection",
        entity=org_of(server),
        project="wandb-registry-model",
        type="model",
        name="Coll",
    )
    coll = found["project"]["artifactType"]["artifactCollection"]
    assert coll["id"] == wandb_id("ArtifactPortfolio", collection_id)
    assert coll["type"] == {"name": "model"}
    data = wire.ok(
        UNLINK_ARTIFACT,
        "UnlinkArtifact",
        input={"artifactID": wandb_id("Artifact", version_id), "artifactPortfolioID": coll["id"]},
    )
    assert data == {"result": {"success": True}}
    assert not sdk.artifact_exists("wandb-registry-model/Coll:v0")
    assert sdk.artifact_exists("team/zoo/net:v0")
    assert [h.action for h in sdk.registry("model").history()][:1] == ["unlink"]


def test_delete_keeps_a_version_with_aliases_unless_delete_aliases(server, sdk, tmp_path):
    f = tmp_path / "w.bin"
    f.write_text("w0")
    run = regalia.init(entity="team", project="zoo")
    art = regalia.Artifact("net", type="model")
    art.add_file(str(f), name="weights.bin")
    logged = run.log_artifact(art, aliases=["keep"])
    run.link_artifact(logged, "wandb-registry-model/Coll")
    run.finish()
    version_id = logged._view.version_id  # type: ignore[attr-defined]
    wire = Wire(server, server.api_key)
    r = wire(
        DELETE_ARTIFACT, "DeleteArtifact", input={"artifactID": wandb_id("Artifact", version_id)}
    )
    assert r.status_code == 409 and "delete_aliases=True" in r.json()["errors"][0]["message"]
    assert sdk.artifact_exists("team/zoo/net:v0")
    data = wire.ok(
        DELETE_ARTIFACT,
        "DeleteArtifact",
        input={"artifactID": wandb_id("Artifact", version_id), "deleteAliases": True},
    )
    assert data == {"result": {"artifact": {"id": wandb_id("Artifact", version_id)}}}
    assert not sdk.artifact_exists("team/zoo/net:v0")
    assert not sdk.artifact_exists("wandb-registry-model/Coll:v0")


def test_delete_is_refused_while_a_link_holds_a_protected_alias(server, sdk, tmp_path):
    linked = log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["production"])
    sdk.registry("model").protect_alias("production")
    version_id, _ = ids(linked)
    r = Wire(server, server.api_key)(
        DELETE_ARTIFACT,
        "DeleteArtifact",
        input={"artifactID": wandb_id("Artifact", version_id), "deleteAliases": True},
    )
    assert r.status_code == 409
    assert "protected aliases" in r.json()["errors"][0]["message"]
    assert sdk.artifact_exists("wandb-registry-model/Coll:production")


# -- automations --------------------------------------------------------------------------------


STAGING_SCRIPT = """
import wandb
art = wandb.Api().artifact("wandb-registry-model/Coll:v0")
art.aliases.append("staging")
art.save()
"""


@pytest.mark.parametrize("release", RELEASES)
def test_an_alias_added_with_save_fires_the_registrys_automation(release, server, sdk, tmp_path):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", [])
    with Receiver([(200, {})]) as hook:
        sdk.registry("model").create_automation(
            "to-staging",
            event="ADD_ARTIFACT_ALIAS",
            action="webhook",
            target=hook.url,
            filter_kind="alias_regex",
            filter_value="^staging$",
        )
        env = client_env(tmp_path / "client", server, server.api_key)
        done = run_script(python, STAGING_SCRIPT, env, tmp_path / "work")
        assert done.returncode == 0, done.stderr[-3000:]
        deadline = time.monotonic() + 20
        while not hook.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(hook.requests) == 1, "the automation did not fire (once)"
        body = hook.requests[0][2].decode()
        assert "staging" in body and "Coll" in body


# -- the registries API (the real client) ---------------------------------------------------------

REGISTRIES_SCRIPT = """
import json, wandb
api = wandb.Api()
names = sorted(r.name for r in api.registries())
found = [r.name for r in api.registries(filter={"name": "model"})]
regex = [r.name for r in api.registries(filter={"name": {"$regex": "^wandb-registry-mod"}})]
colls = sorted(c.name for c in api.registries(filter={"name": "model"}).collections())
tagged = [c.name for c in api.registries().collections(filter={"tag": "vision"})]
versions = sorted(
    (v.name, sorted(v.aliases))
    for v in api.registries(filter={"name": "model"}).versions(filter={"alias": "staging"})
)
chained = sorted(
    v.name for v in api.registries().collections(filter={"name": "Coll"}).versions()
)
prod = [v.name for v in api.registries().versions(filter={"tag": "prod"})]
if wandb.__version__ >= "0.31":
    ordered = [r.name for r in api.registries(order="-name")]
else:
    ordered = sorted((r.name for r in api.registries()), reverse=True)
print(json.dumps({"names": names, "found": found, "regex": regex, "colls": colls, "tagged": tagged,
                  "versions": versions, "chained": chained, "prod": prod,
                  "ordered": ordered}))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_registries_collections_and_versions_with_filters(release, server, sdk, tmp_path):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["staging"])
    log_and_link(tmp_path, "w1", "wandb-registry-model/Coll", [])
    other = log_and_link(tmp_path, "w2", "wandb-registry-model/Other", [])
    backend(sdk).update_collection("model", "Other", add_tags=["vision"])
    backend(sdk).update_version(other._view.membership_id, add_tags=["prod"])  # type: ignore[attr-defined]
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, REGISTRIES_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "model" in out["names"] and "dataset" in out["names"]
    assert out["found"] == out["regex"] == ["model"]
    assert out["colls"] == ["Coll", "Other"]
    assert out["tagged"] == ["Other"]
    assert out["versions"] == [["Coll:v0", ["staging"]]]
    assert out["chained"] == ["Coll:v0", "Coll:v1"]
    assert out["prod"] == ["Other:v0"]
    assert out["ordered"] == sorted(out["names"], reverse=True)
    assert refused(tmp_path) == []


CREATE_SCRIPT = """
import json, wandb
api = wandb.Api()
reg = api.create_registry("Secret", visibility="restricted", description="only us",
                          artifact_types=["model"])
print(json.dumps({"name": reg.name, "full": reg.full_name, "vis": reg.visibility,
                  "types": list(reg.artifact_types), "desc": reg.description}))
"""

LIST_SCRIPT = """
import json, wandb
print(json.dumps(sorted(r.name for r in wandb.Api().registries())))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_create_registry_makes_a_restricted_registry_a_non_member_cannot_see(
    release, server, sdk, tmp_path
):
    python = wandb_python(release)
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, CREATE_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "name": "Secret",
        "full": "wandb-registry-Secret",
        "vis": "restricted",
        "types": ["model"],
        "desc": "only us",
    }
    reg = sdk.registry("Secret")
    assert (reg.visibility, reg.description) == ("restricted", "only us")

    _, key = backend(sdk).create_user("outsider", org_role="member")
    other = client_env(tmp_path / "outsider", server, key)
    done = run_script(python, LIST_SCRIPT, other, tmp_path / "work2")
    assert done.returncode == 0, done.stderr[-3000:]
    names = json.loads(done.stdout.strip().splitlines()[-1])
    assert "Secret" not in names and "model" in names

    again = run_script(python, CREATE_SCRIPT, env, tmp_path / "work")
    assert again.returncode != 0 and "already exists" in again.stderr
    assert refused(tmp_path) == []


# -- artifact.save(), unlink(), delete() (the real client) -----------------------------------

SAVE_SCRIPT = """
import json, wandb
art = wandb.Api().artifact("wandb-registry-model/Coll:v0")
art.aliases.append("staging")
art.aliases.remove("candidate")
art.tags.append("prod")
art.description = "the best net"
art.metadata["acc"] = 0.9
art.save()
again = wandb.Api().artifact("wandb-registry-model/Coll:staging")
print(json.dumps({"aliases": sorted(again.aliases), "tags": again.tags,
                  "description": again.description, "metadata": again.metadata,
                  "version": again.version}))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_save_moves_aliases_and_edits_tags_description_metadata(release, server, sdk, tmp_path):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["candidate"])
    log_and_link(tmp_path, "w1", "wandb-registry-model/Coll", ["staging"])
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, SAVE_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "aliases": ["staging"],
        "tags": ["prod"],
        "description": "the best net",
        "metadata": {"acc": 0.9},
        "version": "v0",
    }
    # Regalia's SDK sees the same, and the move is in the registry's history
    assert sdk.artifact("wandb-registry-model/Coll:staging").version == "v0"
    assert sorted(sdk.artifact("wandb-registry-model/Coll:v1").aliases) == ["latest"]
    actions = [(h.action, h.alias) for h in sdk.registry("model").history()]
    assert ("alias_add", "staging") in actions and ("alias_remove", "candidate") in actions
    # linked once: the tag is added through the link, so the registry's history has it
    assert "tag_add" in [a for a, _ in actions]
    assert refused(tmp_path) == []


PROTECTED_SCRIPT = """
import wandb
art = wandb.Api().artifact("wandb-registry-model/Coll:v0")
art.aliases.append("production")
art.save()
"""


@pytest.mark.parametrize("release", RELEASES)
def test_a_member_saving_a_protected_alias_fails_with_regalias_message_once(
    release, server, sdk, tmp_path
):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", [])
    sdk.registry("model").protect_alias("production")
    key = member(sdk, "mia", "model")
    env = client_env(tmp_path / "mia", server, key)
    done = run_script(python, PROTECTED_SCRIPT, env, tmp_path / "work", timeout=90)
    assert done.returncode != 0
    if release == "0.22.3":
        # 0.22.3 replaces the text of any 403 with its own (util.no_retry_auth)
        assert "do not have permission" in done.stderr, done.stderr[-3000:]
    else:
        regalias = "you need the registry role 'admin' in registry 'model' to change protected"
        assert regalias in done.stderr, done.stderr[-3000:]
    sent = [e for e in trace(tmp_path) if e.get("operation") == "AddAliases"]
    assert [e["status"] for e in sent] == [403]  # refused once, not retried
    assert "production" not in sdk.artifact("wandb-registry-model/Coll:v0").aliases


MEMBER_SCRIPT = """
import wandb
art = wandb.Api().artifact("wandb-registry-model/Coll:v0")
art.aliases.append("candidate")
art.save()
"""


@pytest.mark.parametrize("release", RELEASES)
def test_a_registry_member_who_cannot_see_the_source_saves_an_alias(release, server, sdk, tmp_path):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", [])
    key = member(sdk, "mia", "model")
    env = client_env(tmp_path / "mia", server, key)
    done = run_script(python, MEMBER_SCRIPT, env, tmp_path / "work", timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "candidate" in sdk.artifact("wandb-registry-model/Coll:v0").aliases


UNLINK_SCRIPT = """
import wandb
wandb.Api().artifact("wandb-registry-model/Coll:v0").unlink()
"""

DELETE_SCRIPT = """
import sys, wandb
wandb.Api().artifact("team/zoo/net:v0").delete(delete_aliases=len(sys.argv) > 1)
"""


@pytest.mark.parametrize("release", RELEASES)
def test_unlink_removes_the_link_and_keeps_the_source_version(release, server, sdk, tmp_path):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["staging"])
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, UNLINK_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not sdk.artifact_exists("wandb-registry-model/Coll:v0")
    assert sdk.artifact_exists("team/zoo/net:v0")
    assert [h.action for h in sdk.registry("model").history()][:1] == ["unlink"]
    assert refused(tmp_path) == []


@pytest.mark.parametrize("release", RELEASES)
def test_delete_deletes_the_source_version_and_its_links(release, server, sdk, tmp_path):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["staging"])
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, DELETE_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not sdk.artifact_exists("team/zoo/net:v0")
    assert not sdk.artifact_exists("wandb-registry-model/Coll:v0")
    assert refused(tmp_path) == []


def test_save_and_registries_on_sqlite_and_postgresql(db_kind, database_url, tmp_path, monkeypatch):
    """The same client calls against each database Regalia supports."""
    python = wandb_python()
    extra = {"REGALIA_DATABASE_URL": database_url} if db_kind == "postgresql" else {}
    with start_server(tmp_path, **extra) as server:
        monkeypatch.setenv("REGALIA_BASE_URL", server.url)
        monkeypatch.setenv("REGALIA_API_KEY", server.api_key)
        monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "regalia-sdk"))
        monkeypatch.delenv("REGALIA_DATABASE_URL", raising=False)
        sdk = regalia.Api()
        log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["candidate"])
        log_and_link(tmp_path, "w1", "wandb-registry-model/Coll", ["staging"])
        env = client_env(tmp_path / "client", server, server.api_key)
        done = run_script(python, SAVE_SCRIPT, env, tmp_path / "work")
        assert done.returncode == 0, done.stderr[-3000:]
        assert sdk.artifact("wandb-registry-model/Coll:staging").version == "v0"
        assert sdk.artifact("team/zoo/net:v0").tags == ["prod"]
        done = run_script(python, CREATE_SCRIPT, env, tmp_path / "work")
        assert done.returncode == 0, done.stderr[-3000:]
        done = run_script(python, LIST_SCRIPT, env, tmp_path / "work")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Secret" in json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("release", RELEASES)
def test_delete_of_a_version_holding_aliases_asks_for_delete_aliases(
    release, server, sdk, tmp_path
):
    python = wandb_python(release)
    f = tmp_path / "w.bin"
    f.write_text("w0")
    run = regalia.init(entity="team", project="zoo")
    art = regalia.Artifact("net", type="model")
    art.add_file(str(f), name="weights.bin")
    run.log_artifact(art, aliases=["keep"])
    run.finish()
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, DELETE_SCRIPT, env, tmp_path / "work", timeout=90)
    assert done.returncode != 0
    assert "delete_aliases=True" in done.stderr, done.stderr[-3000:]
    assert sdk.artifact_exists("team/zoo/net:keep")
    sent = [e for e in trace(tmp_path) if e.get("operation") == "DeleteArtifact"]
    assert [e["status"] for e in sent] == [409]


def test_a_member_cannot_unlink_what_holds_a_protected_alias_but_may_unlink_the_rest(
    server, sdk, tmp_path
):
    python = wandb_python()
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["production"])
    sdk.registry("model").protect_alias("production")
    key = member(sdk, "mia", "model")
    env = client_env(tmp_path / "mia", server, key)
    done = run_script(python, UNLINK_SCRIPT, env, tmp_path / "work", timeout=90)
    assert done.returncode != 0
    assert "registry role 'admin'" in done.stderr, done.stderr[-3000:]
    assert sdk.artifact_exists("wandb-registry-model/Coll:production")

    log_and_link(tmp_path, "w1", "wandb-registry-model/Plain", [])
    plain = UNLINK_SCRIPT.replace("Coll:v0", "Plain:v0")
    done = run_script(python, plain, env, tmp_path / "work", timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not sdk.artifact_exists("wandb-registry-model/Plain:v0")


def test_a_registry_viewer_cannot_move_aliases(server, sdk, tmp_path):
    python = wandb_python()
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", [])
    key = member(sdk, "vic", "model", role="viewer")
    env = client_env(tmp_path / "vic", server, key)
    done = run_script(python, STAGING_SCRIPT, env, tmp_path / "work", timeout=90)
    assert done.returncode != 0
    assert "registry role 'member'" in done.stderr, done.stderr[-3000:]
    assert "staging" not in sdk.artifact("wandb-registry-model/Coll:v0").aliases


REGISTRY_EDIT_SCRIPT = """
import json, wandb
api = wandb.Api()
api.create_registry("Team", visibility="organization", description="first")
reg = api.registry("Team")
reg.description = "second"
reg.visibility = "restricted"
reg.artifact_types.append("model")
reg.allow_all_artifact_types = False
reg.save()
again = api.registry("Team")
seen = {"desc": again.description, "vis": again.visibility, "types": list(again.artifact_types)}
again.delete()
try:
    api.registry("Team")
    seen["gone"] = False
except ValueError:
    seen["gone"] = True
print(json.dumps(seen))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_a_registry_saved_and_deleted_through_the_client(release, server, sdk, tmp_path):
    python = wandb_python(release)
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, REGISTRY_EDIT_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"desc": "second", "vis": "restricted", "types": ["model"], "gone": True}
    assert "Team" not in [r.name for r in sdk.registries()]
    assert refused(tmp_path) == []


E2E_SCRIPT = """
import json, wandb
art = wandb.Api().artifact("wandb-registry-Model/Zoo_Models:staging")
art.aliases.remove("staging")
art.aliases.append("production")
art.tags.append("reviewed")
art.save()
wandb.Api().artifact("smle-reg-team-2/zoo_experiment/zoo_model:v0").delete(delete_aliases=True)
print(json.dumps(wandb.Api().artifact_exists("wandb-registry-Model/Zoo_Models:production")))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_what_the_client_logged_and_linked_it_edits_and_deletes(release, server, sdk, tmp_path):
    """The seed's first example, unchanged, then the same client moves aliases, tags the
    version and deletes it; Regalia's SDK sees each step."""
    python = wandb_python(release)
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.pt").write_bytes(b"weights" * 1000)
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, example(1), env, work, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    linked = sdk.artifact("wandb-registry-model/Zoo_Models:staging")
    assert sorted(linked.aliases) == ["best_model", "latest", "staging"]

    done = run_script(python, E2E_SCRIPT, env, work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) is False  # deleted with its links
    assert not sdk.artifact_exists("smle-reg-team-2/zoo_experiment/zoo_model:v0")
    actions = [(h.action, h.alias) for h in sdk.registry("model").history()]
    assert ("alias_add", "production") in actions and ("alias_remove", "staging") in actions
    assert "tag_add" in [a for a, _ in actions] and "unlink" in [a for a, _ in actions]
    assert refused(tmp_path) == []


CARD_SCRIPT = """
import json, wandb
coll = wandb.Api().artifact("wandb-registry-model/Coll:v0").collection
coll.description = "the zoo's nets"
coll.tags = ["vision", "zoo"]
coll.save()
coll.tags = ["zoo"]
coll.save()
print(json.dumps("ok"))
"""


@pytest.mark.parametrize("release", RELEASES)
def test_a_registry_collections_description_and_tags_saved_by_the_client(
    release, server, sdk, tmp_path
):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", [])
    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, CARD_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    card = backend(sdk).get_collection("model", "Coll")
    assert (card.description, card.tags) == ("the zoo's nets", ["zoo"])
    actions = [h.action for h in sdk.registry("model").history()]
    assert "collection_tag_add" in actions and "collection_tag_remove" in actions
    assert refused(tmp_path) == []


DELETE_COLLECTION_SCRIPT = """
import wandb
wandb.Api().artifact("wandb-registry-model/Coll:v0").collection.delete()
"""


@pytest.mark.parametrize("release", RELEASES)
def test_a_registry_collection_deleted_by_the_client_keeps_the_sources(
    release, server, sdk, tmp_path
):
    python = wandb_python(release)
    log_and_link(tmp_path, "w0", "wandb-registry-model/Coll", ["production"])
    sdk.registry("model").protect_alias("production")
    key = member(sdk, "mia", "model")
    refused = run_script(
        python, DELETE_COLLECTION_SCRIPT, client_env(tmp_path / "mia", server, key), tmp_path / "w"
    )
    assert refused.returncode != 0  # it holds a protected alias: an admin's to delete
    if release != "0.22.3":  # (0.22.3 prints its own text for a 403)
        assert "registry role 'admin'" in refused.stderr, refused.stderr[-3000:]
    assert sdk.artifact_exists("wandb-registry-model/Coll:v0")

    env = client_env(tmp_path / "client", server, server.api_key)
    done = run_script(python, DELETE_COLLECTION_SCRIPT, env, tmp_path / "work")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not sdk.artifact_exists("wandb-registry-model/Coll:v0")
    assert sdk.artifact_exists("team/zoo/net:v0")
