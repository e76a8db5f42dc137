"""Issue 12, input a hostile client controls: NaN and Infinity in JSON (finding 7),
file paths that are not portable (finding 9), integers past 64 bits (finding 10),
and look-alike names (finding 11). Over real HTTP on SQLite and PostgreSQL,
plus the core rules on their own."""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import ThreadServer
from sqlalchemy import text

import regalia as wandb
from regalia.config import Settings
from regalia.core import jsonvalues, names, scripts
from regalia.core.filters import Cursor, Order, encode_cursor
from regalia.errors import InvalidName, InvalidRequest, NotFound
from regalia.sdk.artifact import Artifact
from regalia.sdk.destinations import download_targets
from regalia.sdk.http import HttpBackend
from regalia.server.app import create_app
from regalia.server.jsonbody import StrictJsonRoute
from regalia.service import Actor, Service
from regalia.store.legacy import rekey_names, repair_json

CYRILLIC_O = "\u043e"
LOOKALIKES = {
    "zero width space": ("prod\u200buction", "alias_invisible"),
    "Cyrillic o": (f"pr{CYRILLIC_O}duction", "alias_mixed_scripts"),
    "right-to-left override": ("\u202eproduction", "alias_invisible"),
    "word joiner": ("produc\u2060tion", "alias_invisible"),
    "byte order mark": ("\ufeffproduction", "alias_invisible"),
}
FULL_WIDTH = "ｐｒｏｄｕｃｔｉｏｎ"


# -- a server, its users, their versions --------------------------------------------------
@dataclass
class Site:
    url: str
    service: Service
    owner: Actor
    settings: Settings
    tmp: Path
    keys: dict[str, str] = field(default_factory=dict)
    backends: list[HttpBackend] = field(default_factory=list)

    def client(self, user: str = "owner") -> httpx.Client:
        """One HTTP client (one kept-alive connection) acting as ``user``."""
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.keys[user]}"},
            timeout=30,
        )

    def backend(self, user: str = "owner") -> HttpBackend:
        own = dataclasses.replace(self.settings, cache_dir=self.tmp / f"cache-{uuid.uuid4().hex}")
        backend = HttpBackend(self.url, self.keys[user], settings=own)
        self.backends.append(backend)
        return backend

    def user(self, name: str, *, registry_role: str | None = None) -> str:
        _, key = self.service.create_user(self.owner, name, org_role="member")
        assert key is not None
        self.keys[name] = key
        if registry_role is not None:
            self.service.set_registry_role(self.owner, "model", user=name, role=registry_role)
        return name

    def upload(self, content: bytes, user: str = "owner") -> dict[str, Any]:
        """Send ``content`` over HTTP as ``user``; its manifest entry (path to be set)."""
        path = self.tmp / f"up-{uuid.uuid4().hex}"
        path.write_bytes(content)
        blob = self.backend(user).store_file(path)
        return {"digest": blob.digest, "size": blob.size, "check": blob.check}

    def log(
        self, path: str = "model.bin", *, name: str = "zoo", user: str = "owner", **extra: Any
    ) -> dict[str, Any]:
        """Log a one-file version of ``name`` over HTTP; its JSON view."""
        entry = {"path": path, **self.upload(uuid.uuid4().bytes, user)}
        body = {"entity": user if user != "owner" else self.owner.name, "project": "p",
                "name": name, "type": "model", "files": [entry], **extra}  # fmt: skip
        with self.client(user) as http:
            r = http.post("/versions", json=body)
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    def link(self, version: dict[str, Any], aliases: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        with self.client() as http:
            r = http.post(
                f"/versions/{version['membership_id']}/links",
                json={"target": "wandb-registry-model/zoo", "aliases": list(aliases)},
            )
        assert r.status_code in (200, 201), r.text
        return dict(r.json())


@pytest.fixture
def site(settings: Settings, service: Service, owner: Actor, tmp_path: Path) -> Iterator[Site]:
    with ThreadServer(settings, service) as srv:
        s = Site(srv.url, service, owner, settings, tmp_path)
        s.keys["owner"] = service.create_api_key(owner)
        yield s
        for b in s.backends:
            b.close()


def _error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if code is not None:
        assert err["code"] == code, err
    return dict(err)


def _local_port(r: httpx.Response) -> int:
    """The client's side of the connection the response came on."""
    return int(r.extensions["network_stream"].get_extra_info("client_addr")[1])


def _raw(body: dict[str, Any], constant: str) -> str:
    """``body`` as JSON text with ``"@"`` replaced by a bare ``constant`` (NaN, ...),
    which no JSON library would write."""
    return json.dumps(body).replace('"@"', constant)


# ======================================================================================
# Finding 7: NaN and Infinity in metadata
# ======================================================================================
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_finding7_nan_in_metadata_is_refused_naming_the_key_and_reads_keep_working(site, constant):
    first = site.link(site.log(metadata={"metrics": {"loss": 0.5}}), ["staging"])
    entry = {"path": "model.bin", **site.upload(b"second version")}
    body = {"entity": site.owner.name, "project": "p", "name": "zoo", "type": "model",
            "files": [entry], "metadata": {"metrics": {"loss": "@"}}}  # fmt: skip
    headers = {"Content-Type": "application/json"}
    with site.client() as http:
        err = _error(http.post("/versions", content=_raw(body, constant), headers=headers), 400)
        assert err["code"] == "invalid_request"
        assert "['metadata']['metrics']['loss']" in err["message"], err
        assert "JSON has no NaN or Infinity" in err["message"]
        # Nothing was written: the artifact still has one version.
        r = http.get("/resolve", params={"path": f"{site.owner.name}/p/zoo:v1"})
        _error(r, 404, "version_not_found")
        mid = first["membership_id"]
        patch = {"metadata": {"metrics": {"loss": "@"}}, "add_tags": ["nan-run"]}
        r = http.patch(f"/versions/{mid}", content=_raw(patch, constant), headers=headers)
        assert "['metadata']['metrics']['loss']" in _error(r, 400)["message"]
        # Everyone still reads: latest, the version, the search box, metadata filters.
        latest = http.get("/resolve", params={"path": "wandb-registry-model/zoo:latest"})
        assert latest.status_code == 200 and latest.json()["metadata"] == {"metrics": {"loss": 0.5}}
        assert latest.json()["tags"] == []  # the refused PATCH changed nothing
        assert http.get(f"/versions/{mid}").status_code == 200
        assert http.get("/search", params={"q": "staging"}).json()["versions"]
        found = http.post(
            "/search/versions", json={"filter": {"metadata.metrics.loss": {"$gt": 0.1}}}
        )
        assert found.status_code == 200 and len(found.json()["items"]) == 1


def test_finding7_every_api_route_reads_json_strictly(settings, service):
    """Each router of the REST API makes StrictJsonRoutes, and together they are
    every path the OpenAPI document lists under /api/v1."""
    from regalia.server import (
        routes_admin,
        routes_automations,
        routes_blobs,
        routes_registries,
        routes_versions,
    )

    modules = (routes_admin, routes_automations, routes_blobs, routes_registries, routes_versions)
    routes = [r for m in modules for r in m.router.routes]
    assert routes and all(isinstance(r, StrictJsonRoute) for r in routes)
    documented = create_app(settings, service=service).openapi()["paths"]
    api = {p for p in documented if p.startswith("/api/v1/")}
    assert api == {"/api/v1" + r.path for r in routes}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_finding7_sdk_raises_invalid_request_for_nan_in_metadata(sdk_env, workdir, bad):
    run = wandb.init(project="p")
    (workdir / "m.bin").write_bytes(b"weights")
    art = wandb.Artifact("zoo", type="model", metadata={"metrics": {"loss": bad}})
    art.add_file(str(workdir / "m.bin"))
    with pytest.raises(InvalidRequest) as err:
        run.log_artifact(art)
    name = "NaN" if bad != bad else ("Infinity" if bad > 0 else "-Infinity")
    assert err.value.message == (
        f"metadata['metrics']['loss'] is {name}: JSON has no NaN or Infinity"
    )
    with pytest.raises(NotFound):
        wandb.Api().artifact(f"{wandb.Api().default_entity}/p/zoo:latest")
    art = wandb.Artifact("zoo", type="model", metadata={"metrics": {"loss": 0.25}})
    art.add_file(str(workdir / "m.bin"))
    run.log_artifact(art)
    logged = wandb.Api().artifact(f"{wandb.Api().default_entity}/p/zoo:latest")
    logged.metadata["metrics"]["loss"] = bad
    with pytest.raises(InvalidRequest, match=r"metadata\['metrics'\]\['loss'\] is "):
        logged.save()
    again = wandb.Api().artifact(f"{wandb.Api().default_entity}/p/zoo:latest")
    assert again.metadata == {"metrics": {"loss": 0.25}}


def test_finding7_text_the_databases_cannot_store_is_refused(site):
    with site.client() as http:
        entry = {"path": "model.bin", **site.upload(b"text")}
        body = {"entity": site.owner.name, "project": "p", "name": "zoo", "type": "model",
                "files": [entry], "metadata": {"note": "@"}}  # fmt: skip
        for escaped in ('"a\\u0000b"', '"\\ud800"'):
            r = http.post(
                "/versions",
                content=_raw(body, escaped),
                headers={"Content-Type": "application/json"},
            )
            assert "['metadata']['note']" in _error(r, 400, "invalid_request")["message"]
        r = http.post("/registries", json={"name": "nul", "description": "a\x00b"})
        _error(r, 400, "invalid_request")
        _error(http.get("/registries/nul"), 404)


def test_finding7_a_nan_kept_by_an_older_version_reads_as_null_and_is_repaired(site, db_kind):
    """SQLite kept NaN in JSON before (PostgreSQL refused it): such a row is sent
    as null, and migration 0006's repair makes metadata filters work again."""
    v = site.link(site.log(metadata={"loss": 1.0}))
    if db_kind == "sqlite":
        with site.service.db.engine.begin() as conn:
            conn.execute(
                text("UPDATE versions SET metadata = :m WHERE id = :id"),
                {"m": '{"loss": NaN, "steps": [1, Infinity]}', "id": v["version_id"]},
            )
        with site.client() as http:
            r = http.get(f"/versions/{v['membership_id']}")
            assert r.status_code == 200
            assert r.json()["metadata"] == {"loss": None, "steps": [1, None]}
            latest = http.get("/resolve", params={"path": "wandb-registry-model/zoo:latest"})
            assert latest.status_code == 200
    with site.service.db.engine.begin() as conn:
        assert repair_json(conn) == (1 if db_kind == "sqlite" else 0)
        assert repair_json(conn) == 0  # idempotent
    with site.client() as http:
        found = http.post(
            "/search/versions", json={"filter": {"metadata.steps": {"$exists": True}}}
        )
        assert found.status_code == 200
        assert len(found.json()["items"]) == (1 if db_kind == "sqlite" else 0)


def test_text_longer_than_its_column_is_a_clear_400(site):
    """PostgreSQL enforces column lengths (SQLite does not): checked first, the same on both."""
    with site.client() as http:
        base = {"entity": site.owner.name, "project": "p"}
        r = http.post("/runs", json={**base, "run_key": "r" * 65})
        assert "1 to 64" in _error(r, 400, "invalid_name")["message"]
        r = http.post("/runs", json={**base, "run_key": "r1", "job_type": "j" * 129})
        _error(r, 400, "invalid_name")
        r = http.post("/registries/model/protected-aliases", json={"alias": "ß" * 100})
        err = _error(r, 400, "invalid_name")
        assert err["details"]["rule"] == "alias_length" and "200 case-folded" in err["message"]


# ======================================================================================
# Finding 9: file paths that are not portable
# ======================================================================================
@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("C:/x", "file_path"),
        ("C:x", "file_path"),
        ("c:", "file_path"),
        ("CON", "file_path_reserved"),
        ("aux.txt", "file_path_reserved"),
        ("data/LPT1.tar.gz", "file_path_reserved"),
        ("a/b.", "file_path_trailing"),
        ("a/b ", "file_path_trailing"),
        ("a\\b", "file_path_characters"),
        ("..\\x", "file_path_characters"),
        ("a/x?.bin", "file_path_characters"),
        ("evil\u202etxt.exe", "file_path_characters"),
        ("/etc/passwd", "file_path"),
        ("a/../../x", "file_path"),
        ("x" * 256, "file_path_length"),
    ],
)
def test_finding9_non_portable_file_paths_are_refused(site, path, rule):
    entry = {"path": path, **site.upload(b"portable?")}
    body = {"entity": site.owner.name, "project": "p", "name": "zoo", "type": "model",
            "files": [entry]}  # fmt: skip
    with site.client() as http:
        err = _error(http.post("/versions", json=body), 400, "invalid_name")
        assert err["details"]["rule"] == rule, err
        assert "file name" in err["message"]
        r = http.get("/resolve", params={"path": f"{site.owner.name}/p/zoo"})
        _error(r, 404, "artifact_not_found")


@pytest.mark.parametrize(
    ("paths", "rule"),
    [(["Model.bin", "model.bin"], "file_path_duplicate"), (["a", "a/b"], "file_path_conflict")],
)
def test_finding9_a_manifest_that_cannot_be_written_into_one_folder_is_refused(site, paths, rule):
    files = [{"path": p, **site.upload(p.encode())} for p in paths]
    body = {"entity": site.owner.name, "project": "p", "name": "zoo", "type": "model",
            "files": files}  # fmt: skip
    with site.client() as http:
        err = _error(http.post("/versions", json=body), 400, "invalid_name")
        assert err["details"]["rule"] == rule


@pytest.mark.parametrize(
    "hostile",
    ["../escape.txt", "a/../../escape.txt", "/tmp/escape.txt", "C:x", "C:/x", "..\\x", "CON"],
)
def test_finding9_sdk_refuses_a_forged_manifest_and_writes_nothing(site, tmp_path, hostile):
    """A server (or anything between) answering a manifest that would write outside
    the download folder: the SDK refuses before it writes a byte."""
    v = site.log("model.bin")

    def forging(request: httpx.Request) -> httpx.Response:
        response = real.handle_request(request)
        if request.url.path.endswith("/files"):
            response.read()
            files = response.json()
            files[0]["path"] = hostile
            return httpx.Response(200, json=files)
        return response

    real = httpx.HTTPTransport()
    backend = site.backend()
    backend.client = httpx.Client(
        base_url=backend.client.base_url,
        headers=backend.client.headers,
        transport=httpx.MockTransport(forging),
    )
    art = Artifact._from_view(backend, backend.get_version(v["membership_id"]))
    root = tmp_path / "out" / "inner"
    with pytest.raises(InvalidName, match="refusing to download") as err:
        art.download(root)
    assert repr(hostile) in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
    assert not Path("/tmp/escape.txt").exists()


def test_finding9_sdk_does_not_follow_a_link_out_of_the_download_folder(site, tmp_path):
    v = site.log("link/model.bin")
    backend = site.backend()
    art = Artifact._from_view(backend, backend.get_version(v["membership_id"]))
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(InvalidName, match="outside the download folder"):
        art.download(root)
    assert list(outside.iterdir()) == []
    (root / "link").unlink()
    art.download(root)
    assert (root / "link" / "model.bin").is_file()


def test_download_targets_stay_inside_the_root(tmp_path):
    assert download_targets(tmp_path, ["a/b.bin", "c"], what="x") == [
        tmp_path / "a" / "b.bin",
        tmp_path / "c",
    ]
    for bad in ("../x", "C:x", "a\\b", "/x", "NUL.txt", "a/"):
        with pytest.raises(InvalidName):
            download_targets(tmp_path, [bad], what="x")


# ======================================================================================
# Finding 10: integers past 64 bits
# ======================================================================================
BIG = [2**63, 2**64, 10**30]


def test_finding10_big_integers_get_a_clear_4xx_and_the_connection_stays_open(site):
    v = site.link(site.log(), ["staging"])
    # Cursors carry an unkeyed checksum: a client can write one with any numbers.
    when = "2026-01-01T00:00:00+00:00"
    forged = [Cursor("version", Order("created_at", True), when, n) for n in BIG]
    forged += [Cursor("version", Order("version", True), n, 1) for n in BIG]
    requests: list[tuple[str, str, dict[str, Any]]] = []
    for n in BIG:
        requests += [
            ("GET", f"/versions/{n}", {}),
            ("GET", f"/versions/{n}/files", {}),
            ("PATCH", f"/versions/{n}", {"json": {"description": "x"}}),
            ("POST", f"/versions/{n}/aliases", {"json": {"add": ["x"]}}),
            ("POST", f"/versions/{n}/links", {"json": {"target": "wandb-registry-model/zoo"}}),
            ("GET", f"/automations/{n}", {}),
            ("GET", f"/automations/{n}/deliveries", {}),
            ("GET", f"/deliveries/{n}", {}),
            ("GET", "/registries/model/history", {"params": {"cursor": str(n)}}),
            ("GET", "/registries/model/history", {"params": {"limit": str(n)}}),
            ("GET", "/search", {"params": {"q": "zoo", "limit": str(n)}}),
            ("POST", "/search/versions", {"json": {"limit": n}}),
            ("POST", "/search/versions", {"json": {"filter": {"version": {"$gt": n}}}}),
            ("POST", "/uploads", {"json": {"digest": "a" * 64, "size": n}}),
            ("PUT", f"/uploads/{'a' * 64}/parts/{n}", {"content": b"x"}),
        ]
    for n in (2**64, 10**30):  # 2**63 is a number metadata may hold (a float filter)
        requests.append(
            ("POST", "/search/versions", {"json": {"filter": {"metadata.x": {"$gt": n}}}})
        )
    for cursor in forged:
        body = {"cursor": encode_cursor(cursor), "order": f"-{cursor.order.field}"}
        requests.append(("POST", "/search/versions", {"json": body}))
    for ref in ("v99999999999999999999", "v3000000000", "v2147483648", "v" + "9" * 120):
        requests.append(
            ("GET", "/resolve", {"params": {"path": f"wandb-registry-model/zoo:{ref}"}})
        )
    entry = {"path": "model.bin", "digest": "b" * 64, "size": 10**30}
    body = {"entity": site.owner.name, "project": "p", "name": "zoo", "type": "model",
            "files": [entry]}  # fmt: skip
    requests.append(("POST", "/versions", {"json": body}))
    with site.client() as http:
        port = _local_port(http.get("/viewer"))
        for method, url, kwargs in requests:
            r = http.request(method, url, **kwargs)
            assert 400 <= r.status_code < 500, (method, url, kwargs, r.status_code, r.text)
            assert r.json()["error"]["message"], r.text
            ok = http.get(f"/versions/{v['membership_id']}")
            assert ok.status_code == 200
            assert _local_port(ok) == port, (method, url)  # the same kept-alive connection
        r = http.get("/resolve", params={"path": "wandb-registry-model/zoo:v3000000000"})
        err = _error(r, 400, "invalid_name")
        assert "v0 to v2147483647" in err["message"]


def test_finding10_in_process_sdk_gets_the_same_answers(service, owner, make_version):
    v = make_version(owner)
    for n in BIG:
        with pytest.raises(NotFound):
            service.get_version(owner, n)
        with pytest.raises(NotFound):
            service.get_automation(owner, n)
        with pytest.raises(InvalidRequest):
            service.history(owner, "model", cursor=str(n))
    with pytest.raises(InvalidName, match="out of range"):
        service.resolve(owner, f"{owner.name}/proj/zoo:v3000000000")
    with pytest.raises(InvalidRequest):
        service.find_versions(owner, filter={"metadata.x": {"$gt": 10**400}})
    assert service.get_version(owner, v.membership_id).membership_id == v.membership_id


def test_unexpected_errors_answer_500_and_keep_the_connection(site, monkeypatch):
    """Starlette's last resort re-raises after its 500, and uvicorn then drops the
    connection: a kept-alive client failed its next request too."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(site.service, "list_registries", broken)
    with site.client() as http:
        port = _local_port(http.get("/viewer"))
        err = _error(http.get("/registries"), 500, "internal_error")
        assert "a bug" not in err["message"]  # no internals
        after = http.get("/viewer")
        assert after.status_code == 200 and _local_port(after) == port
        metrics = httpx.get(site.url + "/metrics").text
        assert 'route="/api/v1/registries",status="500"} 1.0' in metrics


# ======================================================================================
# Finding 11: look-alike names
# ======================================================================================
@pytest.fixture
def protected(site: Site) -> dict[str, Any]:
    """``production`` protected in ``model`` and on v0 of ``zoo``; v1 holds no alias
    but ``latest``; ``mallory`` is a member of ``model``."""
    v0 = site.link(site.log(), ["production"])
    v1 = site.link(site.log())
    with site.client() as http:
        r = http.post("/registries/model/protected-aliases", json={"alias": "production"})
        assert r.status_code == 200
    site.user("mallory", registry_role="member")
    return {"v0": v0, "v1": v1}


@pytest.mark.parametrize("case", sorted(LOOKALIKES))
def test_finding11_lookalike_aliases_are_refused(site, protected, case):
    alias, rule = LOOKALIKES[case]
    v1 = protected["v1"]["membership_id"]
    for user in ("mallory", "owner"):
        with site.client(user) as http:
            err = _error(http.post(f"/versions/{v1}/aliases", json={"add": [alias]}), 400)
            assert err["code"] == "invalid_name" and err["details"]["rule"] == rule, err
            r = http.post(
                f"/versions/{protected['v0']['membership_id']}/links",
                json={"target": "wandb-registry-model/other", "aliases": [alias]},
            )
            assert _error(r, 400)["details"]["rule"] == rule
            r = http.post("/registries/model/protected-aliases", json={"alias": alias})
            assert _error(r, 400 if user == "owner" else 400)["details"]["rule"] == rule
    with site.client() as http:
        view = http.get(f"/versions/{v1}").json()
        assert view["aliases"] == ["latest"]
        _error(http.get("/registries/model/collections/other"), 404)


def test_finding11_full_width_letters_are_the_protected_alias(site, protected):
    v0, v1 = protected["v0"]["membership_id"], protected["v1"]["membership_id"]
    with site.client("mallory") as http:
        r = http.post(f"/versions/{v1}/aliases", json={"add": [FULL_WIDTH]})
        err = _error(r, 403, "permission_denied")
        assert err["details"]["required_role"] == "admin"
        r = http.post(f"/versions/{v0}/aliases", json={"remove": ["ＰＲＯＤＵＣＴＩＯＮ"]})
        _error(r, 403, "permission_denied")
        at = http.get("/resolve", params={"path": f"wandb-registry-model/zoo:{FULL_WIDTH}"})
        assert at.status_code == 200 and at.json()["membership_id"] == v0
    with site.client() as http:  # an admin moves it: the same alias, no second one
        moved = http.post(f"/versions/{v1}/aliases", json={"add": [FULL_WIDTH]}).json()
        assert moved["aliases"] == ["latest", "production"]
        assert moved["protected_aliases"] == ["production"]
        assert "production" not in http.get(f"/versions/{v0}").json()["aliases"]
        r = http.post("/registries/model/protected-aliases", json={"alias": FULL_WIDTH})
        assert r.json()["protected_aliases"] == ["production"]
        history = http.get("/registries/model/history", params={"alias": FULL_WIDTH}).json()
        assert [e["alias"] for e in history["items"]][:1] == ["production"]


def test_finding11_mixed_script_registry_names_and_tags_are_refused(site):
    with site.client() as http:
        for name, rule in [
            (f"Visi{CYRILLIC_O}n", "registry_name_mixed_scripts"),
            ("Vision\u200d", "registry_name_invisible"),
            ("\u202eVision", "registry_name_invisible"),
            ("Vision\u2028Models", "registry_name_characters"),
        ]:
            err = _error(http.post("/registries", json={"name": name}), 400, "invalid_name")
            assert err["details"]["rule"] == rule, err
        assert http.post("/registries", json={"name": "Vision"}).status_code == 201
        err = _error(http.post("/registries", json={"name": "Ｖｉｓｉｏｎ"}), 409, "already_exists")
        assert "'Vision'" in err["message"]
        assert http.get("/registries/ＶＩＳＩＯＮ").json()["name"] == "Vision"
        v = site.link(site.log())
        mid = v["membership_id"]
        for tag, rule in [
            (f"b{CYRILLIC_O}rt", "tag_mixed_scripts"),
            ("bert\u200b", "tag_invisible"),
        ]:
            r = http.patch(f"/versions/{mid}", json={"add_tags": [tag]})
            assert _error(r, 400, "invalid_name")["details"]["rule"] == rule
            r = http.patch("/registries/model/collections/zoo", json={"add_tags": [tag]})
            assert _error(r, 400, "invalid_name")["details"]["rule"] == rule
        assert http.get(f"/versions/{mid}").json()["tags"] == []


@pytest.mark.parametrize(
    ("alias", "tag"),
    [
        ("本番", "日本語モデル"),
        ("運用-v2", "モデル bert"),
        ("운영", "한국어-모델"),
        ("生產", "中文 ㄅㄆ"),
    ],
)
def test_finding11_japanese_korean_and_chinese_names_are_accepted(site, alias, tag):
    v = site.link(site.log(), [alias])
    with site.client() as http:
        r = http.patch(f"/versions/{v['membership_id']}", json={"add_tags": [tag]})
        assert r.status_code == 200 and r.json()["tags"] == [tag]
        found = http.get("/resolve", params={"path": f"wandb-registry-model/zoo:{alias}"})
        assert found.status_code == 200 and alias in found.json()["aliases"]
        r = http.post("/registries", json={"name": f"{tag.split()[0]}-registry"})
        assert r.status_code == 201, r.text


def test_finding11_names_stored_before_normalization_are_rekeyed(site, protected, db_kind):
    """An alias row written before issue 12 (``ｐｒｏｄｕｃｔｉｏｎ``, keyed by lower()):
    migration 0006 gives it the NFKC name and key, so it counts as protected."""
    v1 = protected["v1"]["membership_id"]
    with site.client() as http:
        http.post(f"/versions/{v1}/aliases", json={"add": ["staging", "prod-ß"]})
        http.post("/registries/model/protected-aliases", json={"alias": "prod-ss"})
    with site.service.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE aliases SET name = :n, name_key = :n WHERE name = 'staging' AND "
                 "membership_id = :m"),
            {"n": "ｓｔａｇｉｎｇ-ｘ", "m": v1},
        )  # fmt: skip
        conn.execute(
            text("UPDATE aliases SET name_key = 'prod-ß' WHERE name = 'prod-ß' AND "
                 "membership_id = :m"),
            {"m": v1},
        )  # fmt: skip
    with site.client() as http:  # before: the legacy key is out of reach
        r = http.get("/resolve", params={"path": "wandb-registry-model/zoo:staging-x"})
        _error(r, 404, "version_not_found")
    with site.service.db.engine.begin() as conn:
        assert rekey_names(conn) >= 2  # the session's PostgreSQL database is shared
        assert rekey_names(conn) == 0  # idempotent
    with site.client("mallory") as http:
        r = http.get("/resolve", params={"path": "wandb-registry-model/zoo:ＳＴＡＧＩＮＧ-x"})
        assert r.status_code == 200 and r.json()["membership_id"] == v1
        assert "staging-x" in r.json()["aliases"]
        r = http.post(f"/versions/{v1}/aliases", json={"remove": ["PROD-SS"]})
        _error(r, 403, "permission_denied")  # 'prod-ß' folds to the protected 'prod-ss'


def test_removing_a_legacy_lookalike_by_its_exact_name_works(site, protected):
    v1 = protected["v1"]["membership_id"]
    with site.client() as http:
        http.post(f"/versions/{v1}/aliases", json={"add": ["staging"]})
    legacy = f"st{CYRILLIC_O}ging\u200b"
    with site.service.db.engine.begin() as conn:
        conn.execute(
            text("UPDATE aliases SET name = :n, name_key = :n WHERE name = 'staging' AND "
                 "membership_id = :m"),
            {"n": legacy, "m": v1},
        )  # fmt: skip
    with site.client() as http:
        r = http.post(f"/versions/{v1}/aliases", json={"remove": [legacy]})
        assert r.status_code == 200 and r.json()["aliases"] == ["latest"]


# ======================================================================================
# The core rules
# ======================================================================================
@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        (FULL_WIDTH, "production"),
        ("ｐｒｏｄ-①", "prod-1"),
        ("Ｐｒｏｄ", "Prod"),
        ("ﬁnal", "final"),
        ("café", "café"),
        ("cafe\u0301", "café"),
        ("本番", "本番"),
        ("v2-モデル", "v2-モデル"),
        ("Ελληνικά", "Ελληνικά"),
        ("продакшн", "продакшн"),
    ],
)
def test_aliases_are_nfkc_normalized(alias, expected):
    assert names.validate_alias(alias) == expected


@pytest.mark.parametrize(
    ("alias", "rule"),
    [
        ("prod\u200buction", "alias_invisible"),
        ("prod\u200cuction", "alias_invisible"),
        ("prod\u200duction", "alias_invisible"),
        ("prod\u200euction", "alias_invisible"),
        ("prod\u200fuction", "alias_invisible"),
        ("prod\u202auction", "alias_invisible"),
        ("prod\u2066uction", "alias_invisible"),
        ("prod\u2069uction", "alias_invisible"),
        ("prod\u00aduction", "alias_invisible"),
        ("prod\u034fuction", "alias_invisible"),
        ("prod\ufe0fuction", "alias_invisible"),
        ("prod\u3164uction", "alias_invisible"),
        ("prod\ue000uction", "alias_invisible"),
        ("prod\U000e0001", "alias_invisible"),
        ("prod\x85", "alias_characters"),
        (f"pr{CYRILLIC_O}duction", "alias_mixed_scripts"),
        ("prodυction", "alias_mixed_scripts"),  # Greek upsilon
        ("prod٠", "alias_mixed_scripts"),  # an Arabic-Indic zero
        ("モデルмодель", "alias_mixed_scripts"),
        ("ｐｒｏｄ：ｘ", "alias_characters"),  # a full-width colon is a colon
        ("ｌａｔｅｓｔ", "alias_managed"),
        ("ｖ７", "alias_managed"),
    ],
)
def test_invisible_and_mixed_script_aliases_name_the_rule(alias, rule):
    with pytest.raises(InvalidName) as err:
        names.validate_alias(alias)
    assert err.value.details["rule"] == rule
    if rule == "alias_invisible":
        assert "U+" in err.value.message


def test_name_keys_fold_case_and_compatibility_forms():
    assert names.name_key("Production") == names.name_key(FULL_WIDTH) == "production"
    assert names.name_key("STRASSE") == names.name_key("straße") == "strasse"
    assert names.name_key("ΣΊΣΥΦΟΣ") == names.name_key("σίσυφος")
    for ascii_name in ("Model", "wandb-registry-X", "v12", "a_b.c-D"):
        assert names.name_key(ascii_name) == ascii_name.lower()  # old keys still match


def test_every_listed_script_is_known_to_the_regex_module():
    assert tuple(scripts._NAMES) == scripts.SCRIPT_NAMES
    assert scripts.script_of(CYRILLIC_O) == "Cyrillic"
    assert scripts.mixed_scripts("bert-モデル-本番") is None
    assert scripts.mixed_scripts("bert-모델") is None
    assert scripts.mixed_scripts("모델モデル") == ("Hangul", "Katakana", "モ")


@pytest.mark.parametrize(
    "ok", ["a/b.txt", "model.tar.gz", ".hidden", "con-fig", "COM10", "日本/データ.bin", "a b/c"]
)
def test_portable_file_paths_are_accepted(ok):
    assert names.validate_file_path(ok) == ok


def test_version_numbers_are_bounded():
    assert names.version_index_from_ref("v2147483647") == 2**31 - 1
    assert names.version_index_from_ref("v٧") is None  # another script's digit: not a version
    for ref in ("v2147483648", "v99999999999999999999", "v" + "9" * 100):
        with pytest.raises(InvalidName, match="out of range"):
            names.version_index_from_ref(ref)


def test_json_values_name_the_key_path():
    with pytest.raises(InvalidRequest, match=r"^metadata\['a'\]\[2\]\['b'\] is NaN"):
        jsonvalues.validate_json({"a": [0, 1, {"b": float("nan")}]}, "metadata")
    for bad, fragment in [
        ({"n": 2**64}, "integer past"),
        ({1: "x"}, "keys are text"),
        ({"s": {1, 2}}, "a set"),
        ({"b": b"x"}, "a bytes"),
        ({"t": "a\x00b"}, r"U\+0000"),
        ({"t": "\ud800"}, "lone surrogate"),
        (json.loads("[" * 70 + "]" * 70), "nested more than 64"),
    ]:
        with pytest.raises(InvalidRequest, match=fragment):
            jsonvalues.validate_json(bad, "metadata")
    value = {"ok": [1.5, -(2**64 - 1), "é", None, True]}
    assert jsonvalues.validate_json(value, "metadata") is value
    assert jsonvalues.loads_strict('{"x": [1, 2.5]}') == {"x": [1, 2.5]}
    with pytest.raises(jsonvalues.NotJson, match=r"body\['x'\]\[1\] is Infinity"):
        jsonvalues.loads_strict('{"x": [1, 1e400]}', "body")
