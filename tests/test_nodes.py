"""Stateless servers (issue 15, docs/deploy.md): two ``regalia server``
processes on one fresh PostgreSQL database, with one ``REGALIA_SECRET_KEY`` and
one blob store but each its own ``REGALIA_HOME``. Whatever a user starts on one
node carries on on the other: web sessions, key revocations, idempotent
retries, self-authorizing transfer URLs, automations (sent once, paced in
total), versions and alias moves.

Two processes for the whole module; every wait is bounded.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from automation_helpers import Receiver
from conftest import PG_ADMIN_URL
from servers import Nodes, ServerProcess, fresh_pg_database

import regalia
from regalia.config import Settings
from regalia.errors import InvalidRequest
from regalia.sdk.http import HttpBackend
from regalia.server.auth import KEY_CACHE_SECONDS
from regalia.server.ui.session import COOKIE
from regalia.service import Service
from regalia.service.views import FileEntry, VersionView

WEBHOOK_RATE = 4  # messages per second per target, for both nodes together


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    root = tmp_path_factory.mktemp("nodes")
    env = {
        "REGALIA_AUTOMATION_ALLOW_PRIVATE": "1",
        "REGALIA_AUTOMATION_WEBHOOK_RATE": str(WEBHOOK_RATE),
        "REGALIA_SILENT": "1",
    }
    with fresh_pg_database(PG_ADMIN_URL) as url, Nodes(root, url, env=env) as pair:
        yield pair


def backends(nodes: Nodes, key: str | None = None) -> tuple[HttpBackend, HttpBackend]:
    a, b = nodes.urls
    return HttpBackend(a, key or nodes.api_key), HttpBackend(b, key or nodes.api_key)


def logged(backend: HttpBackend, tmp: Path, text: str, target: str) -> VersionView:
    """A one-file version (whole-PUT upload) logged and linked through ``backend``."""
    path = tmp / f"{abs(hash(text))}.txt"
    path.write_text(text)
    blob = backend.store_file(path)
    view = backend.log_version(
        entity="admin",
        project="nodes",
        name=target.rsplit("/", 1)[-1],
        type="model",
        files=[FileEntry("file.txt", blob.digest, blob.size, blob.check)],
    )
    return backend.link(view.membership_id, target)


def log_in(base_url: str, key: str) -> str:
    """Log a browser in on ``base_url``: its session cookie's value."""
    with httpx.Client(base_url=base_url, follow_redirects=False) as browser:
        form = browser.get("/login").text
        nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form)
        assert nonce
        r = browser.post("/login", data={"api_key": key, "nonce": nonce.group(1)})
        assert r.status_code == 303, r.text
        return r.cookies[COOKIE]


def test_a_session_opened_on_one_node_works_on_the_other_and_ends_everywhere(nodes):
    a, b = nodes.urls
    token = log_in(a, nodes.api_key)
    with (
        httpx.Client(base_url=a, cookies={COOKIE: token}) as on_a,
        httpx.Client(base_url=b, cookies={COOKIE: token}) as on_b,
    ):
        page = on_b.get("/")
        assert page.status_code == 200 and "Log out" in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf  # made by node B, for a session node A opened
        assert on_b.post("/logout", data={"csrf": csrf.group(1)}).status_code == 303
        # Ended on A at once (sessions are read from the database on every page).
        after = on_a.get("/", follow_redirects=False)
        assert after.status_code == 303 and after.headers["location"].startswith("/login")


def test_a_key_revoked_through_one_node_is_refused_by_the_other(nodes):
    admin_a, _ = backends(nodes)
    _, key = admin_a.create_user("leaver")
    assert key
    b = nodes.urls[1]
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(b + "/api/v1/viewer", headers=auth).status_code == 200  # B remembers it
    admin_a.revoke_api_keys("leaver")
    revoked = time.monotonic()
    while (r := httpx.get(b + "/api/v1/viewer", headers=auth)).status_code == 200:
        assert time.monotonic() - revoked < KEY_CACHE_SECONDS + 2, "B still accepts the key"
        time.sleep(0.1)
    assert r.status_code == 401
    assert "revoked" in r.json()["error"]["message"]


def test_an_idempotency_key_used_on_one_node_replays_on_the_other(nodes, tmp_path):
    admin_a, admin_b = backends(nodes)
    source = logged(admin_a, tmp_path, "idempotent", "wandb-registry-model/staging")
    headers = {"Authorization": f"Bearer {nodes.api_key}", "Idempotency-Key": "link-once-42"}
    body = {"target": "wandb-registry-model/idem", "aliases": ["candidate"]}
    path = f"/api/v1/versions/{source.membership_id}/links"
    first = httpx.post(nodes.urls[0] + path, json=body, headers=headers)
    again = httpx.post(nodes.urls[1] + path, json=body, headers=headers)
    assert first.status_code == 201, first.text
    # The replay names the version the first request made (200: "linked already",
    # as the API answers every replay) and changes nothing.
    assert again.status_code == 200, again.text
    replay, made = again.json(), first.json()
    for field in ("membership_id", "version_id", "index", "aliases", "digest"):
        assert replay[field] == made[field]
    linked = admin_b.resolve("wandb-registry-model/idem:candidate")
    assert linked.index == 0 and linked.membership_id == made["membership_id"]
    with pytest.raises(regalia.errors.NotFound):
        admin_b.resolve("wandb-registry-model/idem:v1")


def test_a_version_logged_through_one_node_is_read_and_downloaded_through_the_other(
    nodes, tmp_path, monkeypatch
):
    admin_a, admin_b = backends(nodes)
    made = logged(admin_a, tmp_path, "weights from node A", "wandb-registry-model/zoo")
    found = admin_b.resolve("wandb-registry-model/zoo:latest")
    assert found.membership_id == made.membership_id and found.digest == made.digest
    [entry] = admin_b.files(found.membership_id)
    assert entry.path == "file.txt"
    monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "client"))
    monkeypatch.setenv("REGALIA_BASE_URL", nodes.urls[1])
    monkeypatch.setenv("REGALIA_API_KEY", nodes.api_key)
    run = regalia.init(entity="admin", project="reader")
    art = run.use_artifact("wandb-registry-model/zoo:latest")
    root = Path(art.download(tmp_path / "out"))
    run.finish()
    assert (root / "file.txt").read_text() == "weights from node A"


FILE_URLS = """
query Urls($collection: String!, $alias: String!) {
  project(name: "wandb-registry-model", entityName: "regalia") {
    artifactCollection(name: $collection) {
      artifactMembership(aliasName: $alias) {
        files(first: 10) { edges { node { name directUrl } } }
      }
    }
  }
}
"""


def test_a_transfer_url_signed_by_one_node_is_honoured_by_the_other(nodes, tmp_path):
    admin_a, _ = backends(nodes)
    logged(admin_a, tmp_path, "signed bytes", "wandb-registry-model/signed")
    a, b = nodes.urls
    answer = httpx.post(
        a + "/graphql",
        json={"query": FILE_URLS, "variables": {"collection": "signed", "alias": "v0"}},
        auth=("api", nodes.api_key),
    )
    assert answer.status_code == 200, answer.text
    membership = answer.json()["data"]["project"]["artifactCollection"]["artifactMembership"]
    [edge] = membership["files"]["edges"]
    url = edge["node"]["directUrl"]
    assert url.startswith(a)
    # No credentials: the URL's own signature, checked by the node that did not make it.
    got = httpx.get(b + url[len(a) :])
    assert got.status_code == 200, got.text
    assert got.content == b"signed bytes"


def test_an_automation_fires_once_per_event_and_its_rate_holds_across_nodes(nodes, tmp_path):
    """Both nodes run automation workers: each event is delivered exactly once,
    and the target's pace is for the deployment, not per node."""
    admin_a, admin_b = backends(nodes)
    events = 8
    with Receiver([(200, {})]) as rx:
        admin_a.create_automation(
            registry="model", name="count", event="LINK_ARTIFACT", action="webhook", target=rx.url
        )
        for i in range(events):
            via = admin_a if i % 2 == 0 else admin_b
            logged(via, tmp_path, f"automation {i}", "wandb-registry-model/auto")
        deadline = time.monotonic() + 20
        while len(rx.requests) < events:
            assert time.monotonic() < deadline, f"{len(rx.requests)} of {events} delivered"
            time.sleep(0.1)
        time.sleep(1.5)  # a second sending of any of them would arrive by now
        ids = [headers["X-Regalia-Delivery"] for _, headers, _ in rx.requests]
        times = sorted(at for at, _, _ in rx.requests)
    assert len(ids) == events and len(set(ids)) == events
    # 4 a second with a burst of 2: the 8 take at least 1.5 s (two nodes pacing
    # apart would take half that).
    gap = 1 / WEBHOOK_RATE
    assert times[-1] - times[0] >= (events - 2) * gap * 0.9
    for i in range(len(times)):
        in_a_second = [t for t in times[i:] if t - times[i] < 1.0]
        assert len(in_a_second) <= WEBHOOK_RATE + 2


def test_aliases_moved_concurrently_through_both_nodes_end_on_one_version(nodes, tmp_path):
    admin_a, admin_b = backends(nodes)
    views = [
        logged(admin_a if i < 2 else admin_b, tmp_path, f"race {i}", "wandb-registry-model/race")
        for i in range(4)
    ]
    moves = 10  # per node; each node alternates between its own two versions, so
    # every move takes the alias from another version (none is a no-op)
    errors: list[BaseException] = []

    def mover(backend: HttpBackend, mine: list[VersionView]) -> None:
        try:
            for n in range(moves):
                view = backend.add_aliases(mine[n % 2].membership_id, ["production"])
                assert "production" in view.aliases
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [
        threading.Thread(target=mover, args=(admin_a, views[:2])),
        threading.Thread(target=mover, args=(admin_b, views[2:])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    holders = [
        v.index
        for v in (admin_b.get_version(view.membership_id) for view in views)
        if "production" in v.aliases
    ]
    assert len(holders) == 1
    history = admin_a.history("model", "race", alias="production", limit=100).items
    moved = sorted((e for e in history if e.action == "alias_add"), key=lambda e: e.id)
    assert len(moved) == 2 * moves
    # One chain: each move took the alias from where the move before left it.
    assert "from_index" not in moved[0].details
    for before, after in zip(moved, moved[1:], strict=False):
        assert after.details["from_index"] == before.version_index
    assert moved[-1].version_index == holders[0]


def test_a_node_with_another_secret_key_is_refused_at_start(nodes, tmp_path):
    """A node started without the deployment's key (its own $REGALIA_HOME/secret.key)
    stops at once, saying what to do, instead of failing on every signed thing."""
    env = {k: v for k, v in nodes.env.items() if k != "REGALIA_SECRET_KEY"}
    env["REGALIA_HOME"] = str(tmp_path / "stray")
    stray = ServerProcess(env, log=tmp_path / "stray.log")
    with pytest.raises(RuntimeError, match="same REGALIA_SECRET_KEY"):
        stray.start(timeout=20)
    stray.stop()


def test_the_key_check_is_per_organization(tmp_path, pg_database):
    """Deployments sharing a database (one organization each) keep their own keys;
    a second key for the same organization is refused, and the first still works."""

    def service(home: str, org: str) -> Service:
        settings = Settings(
            home=tmp_path / home,
            database_url=pg_database,
            blob_dir=tmp_path / home,
            cache_dir=tmp_path / home / "cache",
            org_name=org,
            silent=True,
        )
        svc = Service(settings)
        svc.ensure_org()
        return svc

    first, other_org, stray = (service("a", "org-keys-x"), service("b", "org-keys-y"),
                               service("c", "org-keys-x"))  # fmt: skip
    try:
        first.check_secret_key()
        other_org.check_secret_key()
        with pytest.raises(InvalidRequest, match="same REGALIA_SECRET_KEY"):
            stray.check_secret_key()
        first.check_secret_key()  # again: the recorded key is its own
    finally:
        for svc in (first, other_org, stray):
            svc.close()
