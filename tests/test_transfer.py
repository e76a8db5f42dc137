"""File transfer and the HTTP contract, through a real server on 127.0.0.1
(SPEC §7 and §8), on SQLite and PostgreSQL.

Uploads send only missing contents; a large content goes in resumable parts
that survive a client killed halfway; bad bytes are refused and never stored.
Downloads serve HTTP Range, resume after a broken connection and detect
damage. Retried writes with the same ``Idempotency-Key`` change nothing again.
Errors keep one envelope and the statuses of the error classes.

The server asks for 1 MiB parts here so that a few MiB make a multi-part
upload and the suite stays fast.

The last tests pin down bugs found while writing this file (fixed since).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import ThreadServer

import regalia.sdk.transfer as transfer
from regalia.config import Settings
from regalia.errors import IntegrityError
from regalia.sdk.artifact import Artifact
from regalia.sdk.http import HttpBackend
from regalia.service import Actor, Service
from regalia.service.views import FileEntry, VersionView

MiB = 1 << 20
PART = MiB  # the server's part size in these tests
IDEM = "Idempotency-Key"


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic bytes, each 32 KiB block distinct (fast: one SHA-256 per block)."""
    block = 32 * 1024
    filler = hashlib.sha256(str(seed).encode()).digest() * (block // 32 - 1)
    out = bytearray()
    for i in range((size + block - 1) // block):
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest() + filler
    return bytes(out[:size])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_hash(data: bytes) -> dict[str, str]:
    """The header a part declares its SHA-256 in (required)."""
    return {"X-Regalia-Part-Sha256": sha256(data)}


# ======================================================================================
# A server around the test's service, and clients that watch what they send
# ======================================================================================
@dataclass
class Sent:
    """Requests a client sent (method, path, headers) and responses it got."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    responses: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_request(self, request: httpx.Request) -> None:
        with self.lock:
            self.requests.append((request.method, request.url.path, dict(request.headers)))

    def on_response(self, response: httpx.Response) -> None:
        req = response.request
        with self.lock:
            self.responses.append((req.method, req.url.path, response.status_code))

    def paths(self, method: str, pattern: str) -> list[str]:
        return [p for m, p, _ in self.requests if m == method and re.search(pattern, p)]

    def parts(self) -> list[int]:
        """Part numbers PUT to a resumable upload, in order."""
        return [int(p.rsplit("/", 1)[1]) for p in self.paths("PUT", r"/uploads/[0-9a-f]+/parts/")]


@dataclass
class Server:
    url: str
    key: str
    service: Service
    owner: Actor
    settings: Settings
    tmp: Path
    backends: list[HttpBackend] = field(default_factory=list)
    counter: int = 0

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def http(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        """A raw HTTP client acting with ``key`` (the owner's by default)."""
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30, **kwargs)

    def backend(
        self,
        sent: Sent | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        url: str | None = None,
    ) -> HttpBackend:
        """The SDK's HTTP backend, with its own empty download cache; ``sent``
        records its requests; ``transport`` replaces the network under it."""
        self.counter += 1
        own = dataclasses.replace(self.settings, cache_dir=self.tmp / f"cache-{self.counter}")
        backend = HttpBackend(url or self.url, self.key, settings=own)
        if transport is not None or sent is not None:
            old = backend.client
            backend.client = httpx.Client(
                base_url=old.base_url,
                headers=old.headers,
                timeout=old.timeout,
                transport=transport,
                event_hooks=(
                    {"request": [sent.on_request], "response": [sent.on_response]}
                    if sent is not None
                    else None
                ),
            )
            old.close()
        self.backends.append(backend)
        return backend

    def uploaded_bytes(self) -> float:
        """The server's ``regalia_upload_bytes`` counter."""
        text = httpx.get(self.url + "/metrics").text
        found = re.search(r"^regalia_upload_bytes_total (\S+)$", text, re.M)
        assert found, text
        return float(found.group(1))

    def stored(self, digest: str) -> bool:
        return self.service.blobs.has(digest)

    def upload_dir_leftovers(self) -> list[Path]:
        root = self.settings.home / "uploads"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def server(settings: Settings, service: Service, owner: Actor, tmp_path: Path) -> Iterator[Server]:
    small_parts = dataclasses.replace(settings, upload_part_bytes=PART)
    with ThreadServer(small_parts, service) as srv:
        s = Server(srv.url, service.create_api_key(owner), service, owner, settings, tmp_path)
        yield s
        for b in s.backends:
            b.close()


@pytest.fixture
def parts_below_16mib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send contents over one part as resumable uploads, as the SDK does above 16 MiB
    (so that a few MiB exercise the resumable path)."""
    monkeypatch.setattr(transfer, "WHOLE_UPLOAD_MAX", PART)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def log(backend: HttpBackend, files: dict[str, Path], name: str = "zoo") -> VersionView:
    """Upload ``files`` (artifact path -> local file) and log them as a version."""
    blobs = backend.store_files(list(files.values()))
    entries = [FileEntry(p, b.digest, b.size, b.check) for p, b in zip(files, blobs, strict=True)]
    return backend.log_version(
        entity=backend.actor.name, project="proj", name=name, type="model", files=entries
    )


def download(backend: HttpBackend, view: VersionView, root: Path) -> Path:
    return Path(Artifact._from_view(backend, view).download(root=str(root)))


# ======================================================================================
# a) Only missing contents are uploaded
# ======================================================================================
def test_second_version_sends_no_bytes_for_a_shared_file(server, tmp_path):
    shared = write(tmp_path / "shared.bin", payload(600_000, seed=1))
    first = write(tmp_path / "a.bin", payload(1000, seed=2))
    twin = write(tmp_path / "twin.bin", shared.read_bytes())  # same content, another path
    second = write(tmp_path / "b.bin", payload(3000, seed=3))

    sent = Sent()
    backend = server.backend(sent)
    before = server.uploaded_bytes()
    v0 = log(backend, {"weights": shared, "a": first, "copy/weights": twin})
    # Two paths with one content: uploaded once.
    assert sorted(sent.paths("PUT", r"/blobs/")) == sorted(
        f"/api/v1/blobs/{sha256(p.read_bytes())}" for p in (shared, first)
    )
    assert server.uploaded_bytes() - before == 600_000 + 1000

    sent.requests.clear()
    before = server.uploaded_bytes()
    v1 = log(backend, {"weights": shared, "b": second})
    assert v1.index == v0.index + 1
    assert sent.paths("PUT", r".") == [f"/api/v1/blobs/{sha256(second.read_bytes())}"]
    assert sent.paths("POST", r"/uploads") == []
    assert server.uploaded_bytes() - before == 3000  # nothing of the shared file

    # The server answers /blobs/missing with exactly the contents it lacks.
    with server.http() as http:
        digests = [sha256(shared.read_bytes()), "f" * 64, "f" * 64]
        r = http.post("/blobs/missing", json={"digests": digests})
    assert r.status_code == 200
    assert r.json() == {"missing": ["f" * 64]}

    out = download(server.backend(), v1, tmp_path / "out")
    assert (out / "weights").read_bytes() == shared.read_bytes()
    assert (out / "b").read_bytes() == second.read_bytes()


def test_large_content_already_stored_sends_no_part(server, tmp_path, parts_below_16mib):
    big = write(tmp_path / "big.bin", payload(3 * MiB + 5, seed=4))
    first = Sent()
    log(server.backend(first), {"big": big})
    assert sorted(first.parts()) == [0, 1, 2, 3]

    again = Sent()
    log(server.backend(again), {"big": big}, name="other")
    assert again.parts() == [] and again.paths("PUT", r".") == []
    # Asked directly, the server says the content is stored.
    with server.http() as http:
        r = http.post("/uploads", json={"digest": sha256(big.read_bytes()), "size": 3 * MiB + 5})
    assert r.status_code == 200 and r.json()["stored"] is True


# ======================================================================================
# b) A resumable upload interrupted halfway resumes without re-sending finished parts
# ======================================================================================
class ClientKilled(Exception):
    """Stands for the client process dying: not a network error, so no retry."""


class DiesAfterParts(httpx.HTTPTransport):
    """The network under a client that dies once ``k`` parts were accepted:
    every later request fails (parts already on the wire still arrive)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k
        self.accepted = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        is_part = request.method == "PUT" and "/parts/" in request.url.path
        with self.lock:
            if self.accepted >= self.k:
                raise ClientKilled(f"client died after {self.k} parts")
        response = super().handle_request(request)
        if is_part and response.status_code == 200:
            with self.lock:
                self.accepted += 1
        return response


def upload_state(server: Server, digest: str) -> dict[str, Any]:
    with server.http() as http:
        r = http.get(f"/uploads/{digest}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def finish_and_check(
    server: Server, path: Path, received_before: set[int], part_count: int, tmp_path: Path
) -> None:
    """Upload ``path`` again with a fresh client: only the parts the server lacks
    are sent, the stored blob hashes right, and the version downloads intact."""
    data = path.read_bytes()
    digest = sha256(data)
    sent = Sent()
    view = log(server.backend(sent), {"model.bin": path}, name="resumed")
    resent = sent.parts()
    assert len(resent) == len(set(resent)), resent  # no part sent twice
    assert set(resent) == set(range(part_count)) - received_before
    assert sent.paths("POST", r"/complete$") == [f"/api/v1/uploads/{digest}/complete"]

    blob = server.service.blobs.local_path(digest)
    assert blob is not None and sha256(blob.read_bytes()) == digest
    owner_uploads = server.settings.home / "uploads" / str(server.owner.user_id)
    assert not (owner_uploads / digest).exists()  # upload folder gone
    out = download(server.backend(), view, tmp_path / "resumed-out")
    assert (out / "model.bin").read_bytes() == data


def test_upload_interrupted_after_some_parts_resumes_with_the_others(
    server, tmp_path, parts_below_16mib
):
    data = payload(8 * MiB + 1234, seed=5)  # 9 parts of 1 MiB
    path = write(tmp_path / "model.bin", data)
    digest = sha256(data)

    dying = server.backend(transport=DiesAfterParts(3))
    with pytest.raises(ClientKilled):
        log(dying, {"model.bin": path}, name="resumed")
    assert not server.stored(digest)

    state = upload_state(server, digest)
    assert (state["part_size"], state["part_count"], state["size"]) == (PART, 9, len(data))
    received = set(state["parts_received"])
    assert 3 <= len(received) < 9  # three, plus those already on the wire
    finish_and_check(server, path, received, 9, tmp_path)


SLOW_CLIENT = """
import sys, time
from pathlib import Path
import regalia.sdk.transfer as t
from regalia.config import Settings
from regalia.sdk.http import HttpBackend

t.WHOLE_UPLOAD_MAX = int(sys.argv[4])
t.READ_CHUNK = 64 * 1024
plain = t._FileRange.__iter__

def slow(self):
    for chunk in plain(self):
        time.sleep(0.01)  # about 6 MiB/s per part: the kill lands mid-part
        yield chunk

t._FileRange.__iter__ = slow
backend = HttpBackend(sys.argv[1], sys.argv[2], settings=Settings.from_env())
backend.store_file(Path(sys.argv[3]))
print("uploaded")
"""


def test_upload_of_a_client_killed_with_sigkill_resumes(server, tmp_path, parts_below_16mib):
    data = payload(8 * MiB, seed=6)  # 8 parts
    path = write(tmp_path / "model.bin", data)
    digest = sha256(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env.update(REGALIA_HOME=str(tmp_path / "client-home"), REGALIA_SILENT="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLIENT, server.url, server.key, str(path), str(PART)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        with server.http() as http:
            while True:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the client sent no part in time"
                r = http.get(f"/uploads/{digest}")
                if r.status_code == 200 and len(r.json()["parts_received"]) >= 3:
                    break
                time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    # Let the server finish handling what arrived before the kill.
    time.sleep(0.3)
    state = upload_state(server, digest)
    received = set(state["parts_received"])
    assert 3 <= len(received) < 8, received
    assert not server.stored(digest)
    finish_and_check(server, path, received, 8, tmp_path)


# ======================================================================================
# c) Bytes that do not match are refused and nothing is stored
# ======================================================================================
def _refused(r: httpx.Response, code: str) -> dict[str, Any]:
    assert r.status_code >= 400, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    return dict(err)


def _start(http: httpx.Client, data: bytes) -> dict[str, Any]:
    r = http.post("/uploads", json={"digest": sha256(data), "size": len(data)})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_part_not_matching_its_sha256_is_refused(server):
    data = payload(3 * MiB, seed=7)
    digest = sha256(data)
    parts = [data[i : i + PART] for i in range(0, len(data), PART)]
    with server.http() as http:
        assert _start(http, data)["part_count"] == 3
        ok = http.put(
            f"/uploads/{digest}/parts/0",
            content=parts[0],
            headers={"X-Regalia-Part-Sha256": sha256(parts[0])},
        )
        assert ok.status_code == 200 and ok.json() == {"part": 0, "size": PART}
        damaged = bytes([parts[1][0] ^ 1]) + parts[1][1:]
        r = http.put(
            f"/uploads/{digest}/parts/1",
            content=damaged,
            headers={"X-Regalia-Part-Sha256": sha256(parts[1])},
        )
        err = _refused(r, "content_mismatch")
        assert err["details"] == {"part": 1}
        assert http.get(f"/uploads/{digest}").json()["parts_received"] == [0]
        # A wrong length is refused too: too long (413), too short (400).
        declared = {"X-Regalia-Part-Sha256": sha256(parts[2])}
        r = http.put(f"/uploads/{digest}/parts/2", content=parts[2] + b"x", headers=declared)
        _refused(r, "too_large")
        r = http.put(f"/uploads/{digest}/parts/2", content=parts[2][:-1], headers=declared)
        _refused(r, "invalid_request")
        r = http.put(f"/uploads/{digest}/parts/3", content=b"x", headers=declared)
        _refused(r, "invalid_request")
        assert http.get(f"/uploads/{digest}").json()["parts_received"] == [0]
        # Completing without every part is refused and names the missing ones.
        err = _refused(http.post(f"/uploads/{digest}/complete"), "invalid_request")
        assert err["details"]["missing_parts"] == [1, 2]
        assert http.post("/blobs/missing", json={"digests": [digest]}).json() == {
            "missing": [digest]
        }
    assert not server.stored(digest)


def test_upload_whose_whole_content_does_not_match_stores_nothing(server):
    data = payload(3 * MiB, seed=8)
    digest = sha256(data)
    with server.http() as http:
        _start(http, data)
        for n in range(3):
            chunk = data[n * PART : (n + 1) * PART]
            if n == 2:
                chunk = chunk[:-1] + b"\x00"  # damaged, with a part hash of the damage
            r = http.put(f"/uploads/{digest}/parts/{n}", content=chunk, headers=part_hash(chunk))
            assert r.status_code == 200, r.text
        err = _refused(http.post(f"/uploads/{digest}/complete"), "content_mismatch")
        assert err["details"]["expected"] == digest
        assert err["details"]["actual"] != digest
        # The upload starts over: its parts are gone, nothing is stored.
        assert http.get(f"/uploads/{digest}").status_code == 404
        assert _start(http, data)["parts_received"] == []
        assert http.delete(f"/uploads/{digest}").status_code == 200
    assert not server.stored(digest)
    assert server.upload_dir_leftovers() == []


def test_whole_put_not_matching_its_digest_stores_nothing(server):
    data = payload(100_000, seed=9)
    with server.http() as http:
        r = http.put(f"/blobs/{sha256(data)}", content=data[:-1] + b"?")
        err = _refused(r, "content_mismatch")
        assert err["details"]["expected"] == sha256(data)
        _refused(http.put("/blobs/not-a-digest", content=data), "invalid_request")
        # Over 16 MiB (and the part size) a single PUT is refused: use a resumable upload.
        big = payload(max(PART, transfer.WHOLE_UPLOAD_MAX) + 1, seed=10)
        _refused(http.put(f"/blobs/{sha256(big)}", content=big), "too_large")
        assert not server.stored(sha256(big))
        # And the right bytes are taken.
        r = http.put(f"/blobs/{sha256(data)}", content=data)
        assert r.status_code == 201 and r.json()["size"] == len(data)
    assert server.stored(sha256(data))
    assert server.upload_dir_leftovers() == []


def test_sdk_refuses_a_server_that_stores_other_bytes(server, tmp_path):
    """The client compares the server's digests with its own."""
    path = write(tmp_path / "f.bin", payload(1000, seed=11))

    def lying(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            body = {"digest": "0" * 64, "size": 1000, "check": "blake3:" + "0" * 64}
            return httpx.Response(201, json=body)
        return real.handle_request(request)

    real = httpx.HTTPTransport()
    backend = server.backend(transport=httpx.MockTransport(lying))
    with pytest.raises(IntegrityError):
        backend.store_file(path)


# ======================================================================================
# d) Downloads: HTTP Range, resumed after a broken connection, damage detected
# ======================================================================================
def test_download_supports_http_range(server, tmp_path, parts_below_16mib):
    data = payload(2 * MiB + 7, seed=12)
    view = log(server.backend(), {"model.bin": write(tmp_path / "m.bin", data)})
    url = f"/versions/{view.membership_id}/blobs/{sha256(data)}"
    with server.http() as http:
        whole = http.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["x-regalia-sha256"] == sha256(data)

        r = http.get(url, headers={"Range": "bytes=10-19"})
        assert r.status_code == 206
        assert r.content == data[10:20]
        assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"

        r = http.get(url, headers={"Range": f"bytes={MiB}-"})
        assert r.status_code == 206 and r.content == data[MiB:]

        r = http.get(url, headers={"Range": "bytes=-5"})
        assert r.status_code == 206 and r.content == data[-5:]

        assert http.get(url, headers={"Range": f"bytes={len(data) + 10}-"}).status_code == 416
        # A content that is not a file of this version is not served.
        other = f"/versions/{view.membership_id}/blobs/{'e' * 64}"
        _refused(http.get(other), "not_found")


class CuttingProxy:
    """A TCP proxy to the server that breaks one connection (closes both ends)
    once it relayed ``cut_after`` bytes of a response: a real broken download."""

    def __init__(self, upstream: str, cut_after: int) -> None:
        self.upstream = ("127.0.0.1", int(upstream.rsplit(":", 1)[1]))
        self.cut_after = cut_after
        self.cuts = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, down: bool) -> None:
        relayed = 0
        try:
            while data := src.recv(256 * 1024):
                if down:
                    with self.lock:
                        cut = self.cuts == 0 and relayed + len(data) > self.cut_after
                        if cut:
                            self.cuts += 1
                    if cut:
                        dst.sendall(data[: self.cut_after - relayed])
                        break
                dst.sendall(data)
                relayed += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            with contextlib.suppress(OSError):
                s.close()


def test_download_resumes_after_a_broken_connection(server, tmp_path, parts_below_16mib):
    data = payload(6 * MiB + 99, seed=13)
    view = log(server.backend(), {"model.bin": write(tmp_path / "m.bin", data)})
    proxy = CuttingProxy(server.url, cut_after=2 * MiB + 12345)
    try:
        sent = Sent()
        backend = server.backend(sent, url=proxy.url)
        out = download(backend, view, tmp_path / "out")
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert (out / "model.bin").read_bytes() == data
    blob_gets = [(h.get("range"), p) for m, p, h in sent.requests if m == "GET" and "/blobs/" in p]
    assert len(blob_gets) == 2, blob_gets
    assert blob_gets[0][0] == f"bytes=0-{8 * MiB - 1}"  # the first range tells the size
    resumed = re.fullmatch(r"bytes=(\d+)-(\d+)", blob_gets[1][0])
    assert resumed is not None and int(resumed[2]) == len(data) - 1
    assert 0 < int(resumed[1]) <= 2 * MiB + 12345  # from where it broke, not from 0
    assert [s for m, p, s in sent.responses if m == "GET" and "/blobs/" in p] == [206, 206]
    # The verified content went into the client's cache.
    assert backend.cache.get(sha256(data)) is not None


def test_damaged_download_is_detected_and_nothing_is_kept(server, tmp_path, parts_below_16mib):
    data = payload(3 * MiB, seed=14)
    view = log(server.backend(), {"model.bin": write(tmp_path / "m.bin", data)})
    # The server's copy rots (same size, one bit flipped).
    blob = server.service.blobs.local_path(sha256(data))
    assert blob is not None
    os.chmod(blob, 0o644)
    with blob.open("r+b") as f:
        f.seek(2 * MiB)
        byte = f.read(1)
        f.seek(2 * MiB)
        f.write(bytes([byte[0] ^ 0x10]))
    backend = server.backend()
    with pytest.raises(IntegrityError):
        download(backend, view, tmp_path / "out")
    assert not (tmp_path / "out" / "model.bin").exists()
    assert backend.cache.get(sha256(data)) is None
    leftovers = list((tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else []
    assert [p for p in leftovers if p.is_file()] == []


# ======================================================================================
# e) Idempotency-Key: a retried write changes nothing again
# ======================================================================================
TARGET = "wandb-registry-model/zoo"


def _history(http: httpx.Client, action: str, **params: str) -> list[dict[str, Any]]:
    r = http.get("/registries/model/history", params={"collection": "zoo", **params})
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["action"] == action]


def test_link_retried_with_the_same_key_links_once(server, owner, make_version):
    s0 = make_version(owner, "zero")
    s1 = make_version(owner, "one")
    with server.http() as http:

        def link(source: VersionView, key: str, aliases: list[str] = []) -> httpx.Response:  # noqa: B006
            body = {"target": TARGET, "aliases": aliases}
            return http.post(
                f"/versions/{source.membership_id}/links", json=body, headers={IDEM: key}
            )

        first = link(s0, "link-zero")
        assert first.status_code == 201 and first.json()["index"] == 0
        again = link(s0, "link-zero")
        assert again.status_code == 200
        assert again.json()["membership_id"] == first.json()["membership_id"]
        assert again.json()["index"] == 0
        assert len(_history(http, "link")) == 1

        # Another version links normally; replaying the first key still does nothing.
        other = link(s1, "link-one")
        assert other.status_code == 201 and other.json()["index"] == 1
        replay = link(s0, "link-zero")
        assert replay.json()["membership_id"] == first.json()["membership_id"]
        assert len(_history(http, "link")) == 2
        assert http.get("/resolve", params={"path": f"{TARGET}:latest"}).json()["index"] == 1

        # A different key re-links the same version: R3 returns the same index and
        # applies the new aliases, with no second link entry.
        relink = link(s0, "link-zero-again", ["candidate"])
        assert relink.status_code == 200
        assert relink.json()["index"] == 0 and "candidate" in relink.json()["aliases"]
        assert len(_history(http, "link")) == 2

        # A key belongs to one operation.
        mid = first.json()["membership_id"]
        r = http.post(f"/versions/{mid}/aliases", json={"add": ["x"]}, headers={IDEM: "link-zero"})
        assert _refused(r, "conflict")["details"] == {"operation": "link"}
        # Without a key, nothing is deduplicated (and R3 still holds).
        for _ in range(2):
            r = http.post(f"/versions/{s1.membership_id}/links", json={"target": TARGET})
            assert r.json()["index"] == 1
        assert len(_history(http, "link")) == 2


def test_concurrent_requests_with_one_key_link_once(server, owner, make_version):
    source = make_version(owner)
    results: list[httpx.Response] = []

    def send() -> None:
        with server.http() as http:
            r = http.post(
                f"/versions/{source.membership_id}/links",
                json={"target": "wandb-registry-model/burst", "aliases": ["hot"]},
                headers={IDEM: "burst"},
            )
            results.append(r)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200] * 5 + [201], [r.text for r in results]
    assert len({r.json()["membership_id"] for r in results}) == 1
    with server.http() as http:
        r = http.get("/registries/model/history", params={"collection": "burst"})
        actions = sorted(e["action"] for e in r.json()["items"])
    assert actions == ["alias_add", "alias_add", "link"]  # latest, hot, the link


def test_alias_change_retried_with_the_same_key_changes_nothing_again(server, owner, make_version):
    v0 = server.service.link(owner, make_version(owner).membership_id, TARGET)
    v1 = server.service.link(owner, make_version(owner).membership_id, TARGET)
    with server.http() as http:

        def add(view: VersionView, key: str) -> httpx.Response:
            return http.post(
                f"/versions/{view.membership_id}/aliases",
                json={"add": ["staging"]},
                headers={IDEM: key},
            )

        first = add(v0, "stage-v0")
        assert first.status_code == 200 and "staging" in first.json()["aliases"]
        assert add(v1, "stage-v1").status_code == 200  # moves staging to v1
        # The retry of the first request must not move it back.
        retry = add(v0, "stage-v0")
        assert retry.status_code == 200
        assert retry.json()["membership_id"] == v0.membership_id
        assert "staging" not in retry.json()["aliases"]
        now = http.get("/resolve", params={"path": f"{TARGET}:staging"}).json()
        assert now["index"] == v1.index
        assert len(_history(http, "alias_add", alias="staging")) == 2

        # Unlink: a retry answers like the first request instead of 404.
        for _ in range(2):
            r = http.post(f"/versions/{v0.membership_id}/unlink", headers={IDEM: "drop-v0"})
            assert r.status_code == 200, r.text
        assert len(_history(http, "unlink")) == 1
        r = http.post(f"/versions/{v0.membership_id}/unlink", headers={IDEM: "drop-v0-new"})
        _refused(r, "version_not_found")
        # A key longer than 128 characters is refused.
        _refused(add(v1, "k" * 129), "invalid_request")


# ======================================================================================
# f) Error envelope and statuses
# ======================================================================================
def _envelope(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def _user(server: Server, name: str, org_role: str) -> str:
    _, key = server.service.create_user(server.owner, name, org_role=org_role)
    assert key is not None
    return key


def test_error_statuses_and_envelope(server, owner, make_version):
    viewer_key = _user(server, "val", "viewer")
    member_key = _user(server, "mia", "member")
    server.service.create_registry(owner, "Secret", visibility="restricted")
    linked = server.service.link(owner, make_version(owner).membership_id, TARGET)
    with server.http() as http:
        # 400: an invalid name names the rule it broke; nothing is written.
        err = _envelope(http.post("/registries", json={"name": "a/b"}), 400, "invalid_name")
        assert err["details"]["rule"].startswith("registry_name")
        assert all(r["name"] != "a/b" for r in http.get("/registries").json())
        # 400: a malformed body lists its problems.
        err = _envelope(http.post("/registries", json={"nam": "x"}), 400, "invalid_request")
        assert err["details"]["problems"]
        _envelope(
            http.post("/registries", content=b"{", headers={"Content-Type": "application/json"}),
            400,
            "invalid_request",
        )
        # 409: the registry exists (names ignore case).
        err = _envelope(http.post("/registries", json={"name": "secret"}), 409, "already_exists")
        assert set(err["details"]) == {"registry"}

    # 401: no key, an unknown key, a malformed header.
    for headers in (
        {},
        {"Authorization": "Bearer rg_not_a_key"},
        {"Authorization": "Token abc"},
        {"Authorization": "Basic !!!"},
    ):
        _envelope(httpx.get(server.api + "/viewer", headers=headers), 401, "unauthenticated")
    # HTTP Basic: user "api" and the key as password (what the W&B client sends).
    r = httpx.get(server.api + "/viewer", auth=("api", server.key))
    assert r.status_code == 200 and r.json()["name"] == owner.name
    _envelope(httpx.get(server.api + "/viewer", auth=("bob", server.key)), 401, "unauthenticated")
    _envelope(httpx.get(server.api + "/viewer", auth=("api", "rg_wrong")), 401, "unauthenticated")

    # 403 with the role needed: an org viewer moving an alias in `model`.
    with server.http(viewer_key) as http:
        r = http.post(f"/versions/{linked.membership_id}/aliases", json={"add": ["staging"]})
        err = _envelope(r, 403, "permission_denied")
        assert err["details"]["required_role"] == "member"
        assert "staging" not in http.get(f"/versions/{linked.membership_id}").json()["aliases"]

    # 404: a restricted registry the caller may not see looks like a missing one.
    with server.http(member_key) as http:
        hidden = _envelope(http.get("/registries/Secret"), 404, "registry_not_found")
        missing = _envelope(http.get("/registries/Nope"), 404, "registry_not_found")
        assert hidden["message"].replace("Secret", "X") == missing["message"].replace("Nope", "X")
        assert set(hidden["details"]) == set(missing["details"])
        assert "Secret" not in [r["name"] for r in http.get("/registries").json()]
        hist = http.get("/registries/Secret/history")
        assert hist.status_code == 404 and hist.json()["error"]["code"] == "registry_not_found"

    with server.http() as http:
        # 404 for a missing route or version, in the same envelope.
        _envelope(http.get("/no-such-route"), 404, "not_found")
        _envelope(http.get("/versions/999999"), 404, "version_not_found")
        # 405 for a wrong method.
        _envelope(http.delete("/viewer"), 405, "method_not_allowed")


def test_json_body_over_16mib_is_refused_with_413(server):
    huge = b'{"name": "' + b"x" * (16 * MiB) + b'"}'
    with server.http() as http:
        r = http.post("/registries", content=huge, headers={"Content-Type": "application/json"})
        err = _envelope(r, 413, "too_large")
        assert err["details"] == {"limit": 16 * MiB}
        assert http.get("/viewer").status_code == 200  # the connection still works
    assert all(len(r.name) < 200 for r in server.service.list_registries(server.owner))


def test_chunked_json_body_over_16mib_is_refused_with_413(server):
    """A body without Content-Length (chunked) is cut off at the limit too."""
    huge = b'{"name": "' + b"x" * (16 * MiB) + b'"}'

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(huge), MiB):
            yield huge[i : i + MiB]

    with server.http() as http:
        r = http.post("/registries", content=chunks(), headers={"Content-Type": "application/json"})
    _envelope(r, 413, "too_large")


# ======================================================================================
# Bugs found while writing this file, fixed since
# ======================================================================================
def test_sdk_uploads_a_file_between_part_size_and_16mib(server, tmp_path):
    path = write(tmp_path / "two.bin", payload(2 * MiB, seed=15))
    blob = server.backend().store_file(path)
    assert server.stored(blob.digest)


def test_complete_retried_after_success_answers_stored(server):
    data = payload(2 * MiB, seed=16)
    digest = sha256(data)
    with server.http() as http:
        _start(http, data)
        for n in range(2):
            chunk = data[n * PART : (n + 1) * PART]
            http.put(f"/uploads/{digest}/parts/{n}", content=chunk, headers=part_hash(chunk))
        first = http.post(f"/uploads/{digest}/complete")
        assert first.status_code == 201
        retry = http.post(f"/uploads/{digest}/complete")
        assert retry.status_code in (200, 201), retry.text
        assert retry.json()["digest"] == digest


def test_refused_resend_of_a_received_part_does_not_spoil_the_upload(
    server, tmp_path, parts_below_16mib
):
    data = payload(2 * MiB, seed=17)
    digest = sha256(data)
    with server.http() as http:
        _start(http, data)
        good = data[:PART]
        r = http.put(f"/uploads/{digest}/parts/0", content=good, headers=part_hash(good))
        assert r.status_code == 200
        bad = http.put(
            f"/uploads/{digest}/parts/0",
            content=b"\x00" * PART,
            headers={"X-Regalia-Part-Sha256": sha256(good)},
        )
        _refused(bad, "content_mismatch")
    # The SDK resumes: it sends the parts the server says it lacks, then completes.
    server.backend().store_file(write(tmp_path / "f.bin", data))
    assert server.stored(digest)


def test_a_large_download_comes_in_ranges_and_resumes_the_broken_one(
    server, tmp_path, parts_below_16mib
):
    data = payload(3 * 8 * MiB + 5 * MiB + 3, seed=17)  # four ranges of 8 MiB at most
    view = log(server.backend(), {"model.bin": write(tmp_path / "m.bin", data)})
    proxy = CuttingProxy(server.url, cut_after=5 * MiB)
    try:
        sent = Sent()
        backend = server.backend(sent, url=proxy.url)
        out = download(backend, view, tmp_path / "out")
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert (out / "model.bin").read_bytes() == data
    asked = [h.get("range") for m, p, h in sent.requests if m == "GET" and "/blobs/" in p]
    spans = [tuple(map(int, re.fullmatch(r"bytes=(\d+)-(\d+)", r).groups())) for r in asked]
    whole = [(i * 8 * MiB, min((i + 1) * 8 * MiB, len(data)) - 1) for i in range(4)]
    assert sorted(s for s in spans if s in whole) == whole
    (again,) = [s for s in spans if s not in whole]  # the broken range, from where it broke
    broken = next(w for w in whole if w[0] < again[0] <= w[1])
    assert again[1] == broken[1]


def test_an_empty_content_downloads(server, tmp_path):
    view = log(server.backend(), {"empty.txt": write(tmp_path / "e.txt", b"")})
    out = download(server.backend(), view, tmp_path / "out")
    assert (out / "empty.txt").read_bytes() == b""
