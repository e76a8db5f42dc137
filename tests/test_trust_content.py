"""Issue 12, findings 1 and 2 and the upload contract (SPEC §7), over real HTTP
on SQLite and PostgreSQL.

"Deduplication never grants access": a version may reference stored content
only if the caller sent those bytes or may already download a version that
holds them, and no answer tells a caller whether content it may not read
exists. "An upload belongs to the user who began it."

The cast, in organization ``org``:

- ``owner``: the org admin;
- ``ada``: an org member who made the restricted registry ``Secret`` (its admin)
  and logged ``ada/proj/weights`` with the secret file, linked as ``Secret/zoo:v0``;
- ``otto``: an org member who is not in ``Secret`` (the outsider);
- ``rita``: ``restricted_viewer`` of ``Secret`` (sees the version, may not download);
- ``vic``: ``viewer`` of ``Secret`` (may download);
- ``vera``: an org viewer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import ServerProcess, ThreadServer

from regalia.config import Settings
from regalia.errors import ContentNotUploaded
from regalia.sdk.artifact import Artifact
from regalia.sdk.http import HttpBackend
from regalia.server import sweeper
from regalia.server.uploads import TEMP_MAX_AGE, UPLOAD_MAX_AGE, UploadArea
from regalia.service import Actor, Service
from regalia.service.content import GRANT_LIFETIME
from regalia.service.views import FileEntry
from regalia.store.models import BlobGrant

MiB = 1 << 20
PART = MiB  # the server's part size here, so a few MiB make a resumable upload
SECRET = "Secret"
PART_HEADER = "X-Regalia-Part-Sha256"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // 32 + 1))[:size]


@dataclass
class Cast:
    url: str
    service: Service
    owner: Actor
    keys: dict[str, str]
    actors: dict[str, Actor]
    secret: bytes  # the file only Secret's version (and ada's source) holds
    secret_link: int  # Secret/zoo:v0
    secret_source: int  # ada/proj/weights:v0
    first_put: httpx.Response  # ada's first upload of the secret bytes
    clients: list[httpx.Client]

    def http(self, who: str) -> httpx.Client:
        client = httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=30,
        )
        self.clients.append(client)
        return client

    def backend(self, who: str, tmp: Path) -> HttpBackend:
        settings = dataclasses.replace(self.service.settings, cache_dir=tmp / f"cache-{who}")
        return HttpBackend(self.url, self.keys[who], settings=settings)


def manifest(who: str, digest: str, size: int, name: str = "stolen", **extra: Any) -> dict:
    return {
        "entity": who,
        "project": "proj",
        "name": name,
        "type": "model",
        "files": [{"path": "model.bin", "digest": digest, "size": size, **extra}],
    }


def log_bytes(http: httpx.Client, who: str, data: bytes, name: str) -> httpx.Response:
    r = http.put(f"/blobs/{sha256(data)}", content=data)
    assert r.status_code == 201, r.text
    return http.post("/versions", json=manifest(who, sha256(data), len(data), name))


def error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code >= 400, r.text
    return dict(r.json()["error"])


@pytest.fixture
def cast(settings: Settings, service: Service, owner: Actor) -> Iterator[Cast]:
    keys = {"owner": service.create_api_key(owner)}
    for name, org_role in [
        ("ada", "member"),
        ("otto", "member"),
        ("rita", "member"),
        ("vic", "member"),
        ("vera", "viewer"),
    ]:
        _, key = service.create_user(owner, name, org_role=org_role)
        assert key is not None
        keys[name] = key
    actors = {name: service.authenticate(key) for name, key in keys.items()}
    service.create_registry(actors["ada"], SECRET, visibility="restricted")
    service.set_registry_role(actors["ada"], SECRET, user="rita", role="restricted_viewer")
    service.set_registry_role(actors["ada"], SECRET, user="vic", role="viewer")
    secret = payload(200_000, "the secret weights")
    with ThreadServer(dataclasses.replace(settings, upload_part_bytes=PART), service) as srv:
        c = Cast(srv.url, service, owner, keys, actors, secret, 0, 0, None, [])  # type: ignore[arg-type]
        with c.http("ada") as ada:
            c.first_put = ada.put(f"/blobs/{sha256(secret)}", content=secret)
            assert c.first_put.status_code == 201, c.first_put.text
            r = ada.post("/versions", json=manifest("ada", sha256(secret), len(secret), "weights"))
            assert r.status_code == 201, r.text
            c.secret_source = r.json()["membership_id"]
            r = ada.post(
                f"/versions/{c.secret_source}/links",
                json={"target": f"wandb-registry-{SECRET}/zoo"},
            )
            assert r.status_code == 201, r.text
            c.secret_link = r.json()["membership_id"]
        yield c
        for client in c.clients:
            client.close()


# ======================================================================================
# Finding 1: content is readable by anyone who knows its SHA-256
# ======================================================================================
@pytest.mark.parametrize("who", ["otto", "rita"])
def test_finding1_outsider_cannot_log_a_version_of_a_restricted_file(cast, who):
    d, size = sha256(cast.secret), len(cast.secret)
    nobody = sha256(b"content nobody ever stored")
    with cast.http(who) as http:
        # They may download versions of their own: that gives no right to others' content.
        own = log_bytes(http, who, payload(1000, f"{who}'s own file"), "own")
        assert own.status_code == 201, own.text
        stolen = http.post("/versions", json=manifest(who, d, size))
        never = http.post("/versions", json=manifest(who, nobody, size))
        # One answer, whether or not the content exists: 400, same code, same text.
        assert stolen.status_code == never.status_code == 400
        a, b = error(stolen), error(never)
        assert a["code"] == b["code"] == "content_not_uploaded"
        assert a["message"].replace(d, "D") == b["message"].replace(nobody, "D")
        assert a["details"] == {"path": "model.bin", "digest": d}
        assert "upload it first" in a["message"]
        # Nothing was written: no artifact of theirs exists.
        r = http.get("/resolve", params={"path": f"{who}/proj/stolen:latest"})
        assert error(r)["code"] == "artifact_not_found"
        # And they still cannot download the content through the versions that hold it.
        link = http.get(f"/versions/{cast.secret_link}/blobs/{d}")
        assert link.status_code == (404 if who == "otto" else 403), link.text
        assert error(http.get(f"/versions/{cast.secret_source}/blobs/{d}"))["code"] == (
            "version_not_found"
        )


@pytest.mark.parametrize("who", ["otto", "rita"])
def test_finding1_a_wrong_size_does_not_reveal_the_true_size_or_check(cast, who):
    d, size = sha256(cast.secret), len(cast.secret)
    true_check = cast.first_put.json()["check"]
    nobody = sha256(b"content nobody ever stored, either")
    with cast.http(who) as http:
        for claim in ({"size": 1}, {"size": size, "check": "blake3:" + "0" * 64}):
            body = manifest(who, d, **claim)
            stolen = error(http.post("/versions", json=body))
            body["files"][0]["digest"] = nobody
            never = error(http.post("/versions", json=body))
            assert stolen["code"] == never["code"] == "content_not_uploaded"
            assert stolen["message"].replace(d, "D") == never["message"].replace(nobody, "D")
            text = str(stolen)
            assert str(size) not in text and true_check not in text and true_check[7:] not in text
    # The owner of the content, who may read it, is told what the store holds.
    with cast.http("ada") as ada:
        mine = error(ada.post("/versions", json=manifest("ada", d, 1, "mine")))
        assert mine["code"] == "invalid_request"
        assert str(size) in mine["message"] and true_check in mine["message"]


@pytest.mark.parametrize("who", ["otto", "rita"])
def test_finding11_blobs_missing_and_uploads_do_not_tell_who_stored_what(cast, who):
    d = sha256(cast.secret)
    nobody = sha256(b"nobody")
    with cast.http(who) as http:
        r = http.post("/blobs/missing", json={"digests": [d, nobody]})
        assert r.status_code == 200 and r.json() == {"missing": [d, nobody]}
        # A complete of an upload they never began is "not found", never "stored".
        done = error(http.post(f"/uploads/{d}/complete"))
        none = error(http.post(f"/uploads/{nobody}/complete"))
        assert done["code"] == none["code"] == "not_found"
        assert done["message"].replace(d, "D") == none["message"].replace(nobody, "D")
        # Starting an upload of it begins one of their own, as for unknown content.
        started = http.post("/uploads", json={"digest": d, "size": len(cast.secret)})
        fresh = http.post("/uploads", json={"digest": nobody, "size": len(cast.secret)})
        assert started.status_code == fresh.status_code == 200
        assert started.json()["stored"] is False and started.json()["parts_received"] == []
        assert set(started.json()) == set(fresh.json())
    with cast.http("ada") as ada:
        r = ada.post("/blobs/missing", json={"digests": [d, nobody]})
        assert r.json() == {"missing": [nobody]}
        r = ada.post("/uploads", json={"digest": d, "size": len(cast.secret)})
        assert r.json()["stored"] is True


def test_finding1_uploading_the_bytes_proves_possession(cast, tmp_path):
    d = sha256(cast.secret)
    with cast.http("otto") as otto:
        # Known bytes upload like new ones: same status, same answer as ada's first upload.
        again = otto.put(f"/blobs/{d}", content=cast.secret)
        assert again.status_code == cast.first_put.status_code == 201
        assert again.json() == cast.first_put.json()
        assert otto.post("/blobs/missing", json={"digests": [d]}).json() == {"missing": []}
        r = otto.post("/versions", json=manifest("otto", d, len(cast.secret), "mine"))
        assert r.status_code == 201, r.text
        view = r.json()
    backend = cast.backend("otto", tmp_path)
    try:
        root = Path(Artifact._from_view(backend, _view(view)).download(str(tmp_path / "o")))
    finally:
        backend.close()
    assert (root / "model.bin").read_bytes() == cast.secret


def test_finding1_a_resumable_upload_of_known_content_answers_like_a_first_one(cast):
    big = payload(3 * MiB + 17, "a big shared checkpoint")
    parts = [big[i : i + PART] for i in range(0, len(big), PART)]
    answers = {}
    for who in ("ada", "otto"):  # ada first (new content), then otto (known content)
        with cast.http(who) as http:
            state = http.post("/uploads", json={"digest": sha256(big), "size": len(big)})
            assert state.status_code == 200 and state.json()["stored"] is False, state.text
            assert state.json()["part_count"] == 4
            for n, part in enumerate(parts):
                r = http.put(
                    f"/uploads/{sha256(big)}/parts/{n}",
                    content=part,
                    headers={PART_HEADER: sha256(part)},
                )
                assert r.status_code == 200, r.text
            done = http.post(f"/uploads/{sha256(big)}/complete")
            answers[who] = (done.status_code, done.json())
            r = http.post("/versions", json=manifest(who, sha256(big), len(big), "big"))
            assert r.status_code == 201, r.text
    assert answers["ada"] == answers["otto"]
    assert answers["ada"][0] == 201


def test_finding1_who_may_reference_a_restricted_content_without_uploading(cast):
    """Without uploading: those who may download a version holding it (the org
    admin, Secret's admin and viewer) may; the rest must send the bytes."""
    d, size = sha256(cast.secret), len(cast.secret)
    expected = {
        "owner": True,
        "ada": True,
        "vic": True,
        "rita": False,
        "otto": False,
        "vera": False,
    }
    for who, may in expected.items():
        with cast.http(who) as http:
            missing = http.post("/blobs/missing", json={"digests": [d]}).json()["missing"]
            assert missing == ([] if may else [d]), who
            r = http.post("/versions", json=manifest(who, d, size, "ref"))
            if may:
                assert r.status_code == 201, (who, r.text)
            else:
                assert error(r)["code"] == "content_not_uploaded", who


def test_finding1_content_of_an_organization_registry_is_referenceable_by_org_viewers(cast):
    """An org viewer may download what an organization-visible registry holds,
    so they may reference it; content only in a source artifact of an entity
    they are not part of they may not."""
    shared = payload(5000, "in the model registry")
    private = payload(5000, "only in ada's project")
    with cast.http("owner") as admin:
        v = log_bytes(admin, "team", shared, "shared").json()
        r = admin.post(
            f"/versions/{v['membership_id']}/links", json={"target": "wandb-registry-model/z"}
        )
        assert r.status_code == 201, r.text
        assert log_bytes(admin, "team", private, "private").status_code == 201
    with cast.http("vera") as vera:
        missing = vera.post("/blobs/missing", json={"digests": [sha256(shared), sha256(private)]})
        assert missing.json() == {"missing": [sha256(private)]}
        r = vera.post("/versions", json=manifest("vera", sha256(shared), len(shared), "ok"))
        assert r.status_code == 201, r.text
        r = vera.post("/versions", json=manifest("vera", sha256(private), len(private), "no"))
        assert error(r)["code"] == "content_not_uploaded"


def test_finding1_a_grant_expires_after_its_lifetime(cast, clock):
    lone = payload(4000, "uploaded, never logged")
    logged = payload(4000, "uploaded and logged")
    with cast.http("otto") as otto:
        assert otto.put(f"/blobs/{sha256(lone)}", content=lone).status_code == 201
        assert log_bytes(otto, "otto", logged, "kept").status_code == 201
        clock.advance(seconds=GRANT_LIFETIME.total_seconds() + 60)
        # The grant of the content never logged is gone; the logged one stays
        # referenceable through the version otto may download.
        r = otto.post("/blobs/missing", json={"digests": [sha256(lone), sha256(logged)]})
        assert r.json() == {"missing": [sha256(lone)]}
        r = otto.post("/versions", json=manifest("otto", sha256(lone), len(lone), "late"))
        assert error(r)["code"] == "content_not_uploaded"
        # The sweep deletes expired grants (the table stays bounded).
        assert cast.service.expire_grants() >= 2
        rows = cast.service.db.read(
            lambda repo: (
                repo.s.query(BlobGrant).filter_by(user_id=cast.actors["otto"].user_id).all()
            )
        )
        assert rows == []
        # Sending the bytes again grants anew.
        assert otto.put(f"/blobs/{sha256(lone)}", content=lone).status_code == 201
        r = otto.post("/versions", json=manifest("otto", sha256(lone), len(lone), "late"))
        assert r.status_code == 201, r.text


def test_finding1_the_in_process_backend_obeys_the_same_rule(cast, tmp_path):
    otto = cast.actors["otto"]
    d, size = sha256(cast.secret), len(cast.secret)
    svc = cast.service
    entry = FileEntry("model.bin", d, size, cast.first_put.json()["check"])
    with pytest.raises(ContentNotUploaded):
        svc.log_version(otto, entity="otto", project="proj", name="x", type="model", files=[entry])
    path = tmp_path / "secret.bin"
    path.write_bytes(cast.secret)
    blob = svc.store_file(otto, path)  # otto's own bytes: a grant
    assert blob.digest == d
    view = svc.log_version(
        otto, entity="otto", project="proj", name="x", type="model", files=[entry]
    )
    assert view.created


# ======================================================================================
# Finding 2: resumable uploads keyed by digest alone let anyone corrupt content
# ======================================================================================
def test_finding2_viewer_cannot_overwrite_anothers_upload_part(cast, tmp_path):
    data = payload(3 * MiB, "honest bytes")
    d = sha256(data)
    parts = [data[i : i + PART] for i in range(0, len(data), PART)]
    garbage = b"\x00" * PART
    with cast.http("ada") as ada, cast.http("vera") as vera:
        assert ada.post("/uploads", json={"digest": d, "size": len(data)}).status_code == 200
        ok = ada.put(
            f"/uploads/{d}/parts/0", content=parts[0], headers={PART_HEADER: sha256(parts[0])}
        )
        assert ok.status_code == 200, ok.text
        # vera has no upload of d: ada's is invisible to her, and untouchable.
        bad = {PART_HEADER: sha256(garbage)}
        assert error(vera.put(f"/uploads/{d}/parts/0", content=garbage, headers=bad))["code"] == (
            "not_found"
        )
        assert error(vera.get(f"/uploads/{d}"))["code"] == "not_found"
        assert error(vera.post(f"/uploads/{d}/complete"))["code"] == "not_found"
        assert error(vera.delete(f"/uploads/{d}", params={"user": "ada"}))["code"] == (
            "permission_denied"
        )
        # Starting her own upload of the same content makes a separate one.
        mine = vera.post("/uploads", json={"digest": d, "size": len(data)})
        assert mine.status_code == 200 and mine.json()["parts_received"] == []
        for n in range(3):
            r = vera.put(f"/uploads/{d}/parts/{n}", content=garbage, headers=bad)
            assert r.status_code == 200, r.text
        assert ada.get(f"/uploads/{d}").json()["parts_received"] == [0]
        # Her garbage never reaches the store: her complete fails on the whole hash.
        assert error(vera.post(f"/uploads/{d}/complete"))["code"] == "content_mismatch"
        assert not cast.service.blobs.has(d)
        # Ada finishes hers: the honest bytes are stored.
        for n in (1, 2):
            headers = {PART_HEADER: sha256(parts[n])}
            assert ada.put(f"/uploads/{d}/parts/{n}", content=parts[n], headers=headers).is_success
        done = ada.post(f"/uploads/{d}/complete")
        assert done.status_code == 201 and done.json()["digest"] == d, done.text
        r = ada.post("/versions", json=manifest("ada", d, len(data), "honest"))
        assert r.status_code == 201, r.text
        view = r.json()
    stored = cast.service.blobs.local_path(d)
    assert stored is not None and sha256(stored.read_bytes()) == d
    # Every download verifies.
    for who in ("ada", "owner"):
        backend = cast.backend(who, tmp_path)
        try:
            art = Artifact._from_view(backend, _view(view))
            root = Path(art.download(str(tmp_path / f"out-{who}")))
        finally:
            backend.close()
        assert (root / "model.bin").read_bytes() == data


def test_finding2_a_part_must_match_its_declared_sha256(cast):
    data = payload(2 * MiB, "parts with hashes")
    d = sha256(data)
    parts = [data[:PART], data[PART:]]
    with cast.http("otto") as http:
        assert http.post("/uploads", json={"digest": d, "size": len(data)}).status_code == 200
        damaged = bytes([parts[0][0] ^ 1]) + parts[0][1:]
        r = http.put(
            f"/uploads/{d}/parts/0", content=damaged, headers={PART_HEADER: sha256(parts[0])}
        )
        err = error(r)
        assert (r.status_code, err["code"], err["details"]) == (
            400,
            "content_mismatch",
            {"part": 0},
        )
        assert http.get(f"/uploads/{d}").json()["parts_received"] == []
        # Without the header, or with a malformed one: 400 naming the header.
        for headers in ({}, {PART_HEADER: "not-a-hash"}, {PART_HEADER: "ab" * 31}):
            r = http.put(f"/uploads/{d}/parts/0", content=parts[0], headers=headers)
            err = error(r)
            assert r.status_code == 400 and err["code"] == "invalid_request", r.text
            assert PART_HEADER in err["message"]
        assert http.get(f"/uploads/{d}").json()["parts_received"] == []
        # A received part is final: a resend with other bytes is refused, and the
        # received bytes stay.
        good = {PART_HEADER: sha256(parts[0])}
        assert http.put(f"/uploads/{d}/parts/0", content=parts[0], headers=good).is_success
        other = {PART_HEADER: sha256(damaged)}
        r = http.put(f"/uploads/{d}/parts/0", content=damaged, headers=other)
        assert error(r)["code"] == "conflict"
        assert http.put(f"/uploads/{d}/parts/0", content=parts[0], headers=good).is_success
        headers = {PART_HEADER: sha256(parts[1])}
        assert http.put(f"/uploads/{d}/parts/1", content=parts[1], headers=headers).is_success
        done = http.post(f"/uploads/{d}/complete")
        assert done.status_code == 201, done.text
    assert sha256(cast.service.blobs.local_path(d).read_bytes()) == d


def test_finding2_uploads_are_owned_and_an_org_admin_may_abandon_any(cast):
    data = payload(2 * MiB, "abandoned")
    d = sha256(data)
    with cast.http("otto") as otto, cast.http("owner") as owner, cast.http("vic") as vic:
        assert otto.post("/uploads", json={"digest": d, "size": len(data)}).status_code == 200
        # Another user's DELETE is about their own (absent) upload: 404.
        assert error(vic.delete(f"/uploads/{d}"))["code"] == "not_found"
        assert otto.get(f"/uploads/{d}").status_code == 200
        assert error(owner.delete(f"/uploads/{d}", params={"user": "nobody"}))["code"] == (
            "user_not_found"
        )
        assert owner.delete(f"/uploads/{d}", params={"user": "otto"}).status_code == 200
        assert error(otto.get(f"/uploads/{d}"))["code"] == "not_found"
        # And one's own upload may be abandoned by its owner.
        assert otto.post("/uploads", json={"digest": d, "size": len(data)}).status_code == 200
        assert otto.delete(f"/uploads/{d}").status_code == 200
        assert error(otto.delete(f"/uploads/{d}"))["code"] == "not_found"


def test_finding2_the_sdk_declares_every_part_and_resumes(cast, tmp_path, monkeypatch):
    import regalia.sdk.transfer as transfer

    monkeypatch.setattr(transfer, "WHOLE_UPLOAD_MAX", PART)
    data = payload(3 * MiB + 5, "through the sdk")
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    seen: list[dict[str, str]] = []
    backend = cast.backend("otto", tmp_path)
    backend.client.event_hooks["request"] = [
        lambda req: seen.append(dict(req.headers)) if "/parts/" in req.url.path else None
    ]
    try:
        blob = backend.store_file(path)
    finally:
        backend.close()
    assert blob.digest == sha256(data) and len(seen) == 4
    assert {h["x-regalia-part-sha256"] for h in seen} == {
        sha256(data[i : i + PART]) for i in range(0, len(data), PART)
    }
    assert sha256(cast.service.blobs.local_path(blob.digest).read_bytes()) == blob.digest


# ======================================================================================
# The sweep: crashed transfers' files go after 15 minutes, uploads after 7 days
# ======================================================================================
def _age(path: Path, seconds: float, now: float) -> Path:
    os.utime(path, (now - seconds, now - seconds))
    return path


def _upload_folder(root: Path, owner: int, digest: str, age: float, now: float) -> Path:
    folder = root / str(owner) / digest
    (folder / "parts").mkdir(parents=True)
    for name in ("data", "meta.json"):
        (folder / name).write_bytes(b"{}")
    for p in (folder / "data", folder / "meta.json", folder / "parts", folder):
        _age(p, age, now)
    return folder


def _leftovers(root: Path, now: float) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, age in [
        (".put-stale", TEMP_MAX_AGE + 60),
        (".put-fresh", 30),
        (".complete-7-" + "a" * 64 + "-x", TEMP_MAX_AGE + 60),
        (".complete-7-" + "b" * 64 + "-y", 60),
    ]:
        path = root / name
        path.write_bytes(b"partial")
        files[name] = _age(path, age, now)
    files["upload-old"] = _upload_folder(root, 7, "c" * 64, UPLOAD_MAX_AGE + 60, now)
    files["upload-live"] = _upload_folder(root, 7, "d" * 64, TEMP_MAX_AGE + 60, now)
    legacy = root / ("e" * 64)
    (legacy / "parts").mkdir(parents=True)
    _age(legacy / "parts", TEMP_MAX_AGE + 60, now)
    files["legacy"] = _age(legacy, TEMP_MAX_AGE + 60, now)
    return files


def _check_swept(files: dict[str, Path]) -> None:
    gone = {name for name, path in files.items() if not path.exists()}
    assert gone == {".put-stale", ".complete-7-" + "a" * 64 + "-x", "upload-old", "legacy"}


def test_sweep_at_server_start_removes_stale_temp_files_and_keeps_fresh_ones(
    settings, service, tmp_path
):
    service.ensure_org()
    files = _leftovers(settings.home / "uploads", time.time())
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env |= {
        "REGALIA_HOME": str(settings.home),
        "REGALIA_DATABASE_URL": settings.database_url,
        "REGALIA_ORG": settings.org_name,
    }
    with ServerProcess(env, log=tmp_path / "server.log"):
        _check_swept(files)


def test_sweep_runs_periodically_and_expires_grants(
    settings, service, owner, clock, tmp_path, monkeypatch
):
    area = UploadArea(tmp_path / "uploads", PART)
    files = _leftovers(area.root, time.time())
    path = tmp_path / "f.bin"
    path.write_bytes(b"granted once")
    service.store_file(owner, path)
    clock.advance(seconds=GRANT_LIFETIME.total_seconds() + 1)
    stop = asyncio.Event()
    done: list[sweeper.Swept] = []

    def once(svc: Service, a: UploadArea) -> sweeper.Swept:
        done.append(real(svc, a))
        stop.set()
        return done[-1]

    async def run() -> None:
        await asyncio.wait_for(sweeper.sweep_periodically(service, area, stop, 0.0), timeout=10)

    real = sweeper.sweep_once
    monkeypatch.setattr(sweeper, "sweep_once", once)
    asyncio.run(run())
    _check_swept(files)
    assert done[0].uploads == 4 and done[0].grants >= 1  # (other tests' grants may share the db)
    assert service.referenceable_contents(owner, [sha256(b"granted once")]) == set()


def _view(data: dict[str, Any]) -> Any:
    from regalia.sdk import wire

    return wire.version(data)
