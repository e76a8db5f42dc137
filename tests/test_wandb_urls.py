"""The transfer URLs handed to the `wandb` client (issue 14, docs/security.md):
they carry their own authority, for one purpose, and the server checks the
user's rights again when one is used. Over real HTTP against ``regalia
server``, with the GraphQL the client sends."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from wandb_harness import start_server

import regalia
from regalia.sdk.http import HttpBackend

FILE_URLS = """
query Urls($collection: String!, $alias: String!) {
  project(name: "wandb-registry-Vault", entityName: "regalia") {
    artifactCollection(name: $collection) {
      artifactMembership(aliasName: $alias) {
        files(first: 10) { edges { node { name directUrl } } }
      }
    }
  }
}
"""


def file_url(server_url: str, key: str) -> str:
    answer = httpx.post(
        server_url + "/graphql",
        json={"query": FILE_URLS, "variables": {"collection": "Secrets", "alias": "v0"}},
        auth=("api", key),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    membership = answer.json()["data"]["project"]["artifactCollection"]["artifactMembership"]
    [edge] = membership["files"]["edges"]
    return edge["node"]["directUrl"]


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A server whose restricted registry ``Vault`` holds ``Secrets:v0``, and a
    user ``reader`` who is its viewer: (server, reader's key)."""
    with start_server(tmp_path) as server:
        assert server.api_key
        monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "sdk"))
        admin = HttpBackend(server.url, server.api_key)
        admin.create_registry("Vault", visibility="restricted")
        monkeypatch.setenv("REGALIA_BASE_URL", server.url)
        monkeypatch.setenv("REGALIA_API_KEY", server.api_key)
        (tmp_path / "secret.bin").write_bytes(b"the vault's bytes")
        run = regalia.init(entity="admin", project="vault")
        art = regalia.Artifact(name="secret", type="model")
        art.add_file(local_path=str(tmp_path / "secret.bin"))
        run.link_artifact(artifact=art, target_path="wandb-registry-Vault/Secrets")
        run.finish()
        _, key = admin.create_user("reader")
        assert key
        admin.set_registry_role("Vault", user="reader", role="viewer")
        yield server, admin, key


def test_a_url_issued_before_a_user_lost_access_no_longer_serves_the_file(vault):
    server, admin, key = vault
    url = file_url(server.url, key)
    assert url.startswith(server.url + "/")
    assert httpx.get(url, timeout=10).content == b"the vault's bytes"  # no credentials sent

    admin.set_registry_role("Vault", user="reader", role=None)
    refused = httpx.get(url, timeout=10)
    assert refused.status_code in (403, 404), refused.text
    assert b"the vault's bytes" not in refused.content


def test_a_url_signed_for_one_purpose_is_refused_for_another_and_tampering_is_caught(vault):
    server, _, key = vault
    url = file_url(server.url, key)
    token = url.rsplit("/", 1)[1]
    # A download URL's token does not upload: not a file of a pending artifact.
    upload = httpx.put(f"{server.url}/wandb/artifact-files/{token}", content=b"x", timeout=10)
    assert upload.status_code == 403, upload.text
    assert upload.json()["error"]["code"] == "permission_denied"
    # One character changed in its signature: refused, saying so.
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    forged = httpx.get(f"{server.url}/wandb/files/{flipped}", timeout=10)
    assert forged.status_code == 403, forged.text
    assert forged.json()["error"]["message"] == "this transfer URL is not one this server signed"
