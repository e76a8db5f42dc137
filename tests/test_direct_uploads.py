"""Uploads straight to the bucket (issue 15), on two ``regalia server`` nodes
sharing one PostgreSQL database and one SeaweedFS bucket: the bucket checks
every part against the SHA-256 its URL was signed with, an upload begun on a
node that is then killed completes through the other, sending only the
missing parts, and a content that does not hash to its announced digest is
never stored. Both kinds: in parts (``nodes``, whole PUTs turned off) and one
whole PUT to the content key (``whole_nodes``, the default up to 2 GiB)."""

from __future__ import annotations

import hashlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from servers import ServerProcess

from regalia.blobs.base import check_of

MiB = 1 << 20
PART = 5 * MiB


Nodes = tuple[ServerProcess, ServerProcess, str]


@pytest.fixture
def nodes(seaweed: Any, s3_bucket: str, pg_database: str, tmp_path: Path) -> Iterator[Nodes]:
    """Two nodes (each its own REGALIA_HOME) and the owner's API key; uploads in parts."""
    yield from two_nodes(seaweed, s3_bucket, pg_database, tmp_path, whole_put_max=0)


@pytest.fixture
def whole_nodes(seaweed: Any, s3_bucket: str, pg_database: str, tmp_path: Path) -> Iterator[Nodes]:
    """Two nodes whose uploads of up to 2 GiB are one PUT (the default)."""
    yield from two_nodes(seaweed, s3_bucket, pg_database, tmp_path, whole_put_max=None)


def two_nodes(
    seaweed: Any, s3_bucket: str, pg_database: str, tmp_path: Path, *, whole_put_max: int | None
) -> Iterator[Nodes]:
    shared = {k: v for k, v in os.environ.items() if not k.startswith(("REGALIA_", "AWS_"))}
    shared |= seaweed.env() | {
        "REGALIA_DATABASE_URL": pg_database,
        "REGALIA_BLOB_URL": f"s3://{s3_bucket}/deploy",
        "REGALIA_ORG": f"org-{uuid.uuid4().hex[:8]}",
        "REGALIA_SECRET_KEY": Fernet.generate_key().decode(),
        "REGALIA_UPLOAD_PART_BYTES": str(PART),
        "REGALIA_AUTOMATION_WORKER": "0",
        "REGALIA_SILENT": "1",
    }
    if whole_put_max is not None:
        shared["REGALIA_DIRECT_PUT_MAX_BYTES"] = str(whole_put_max)
    a = ServerProcess(shared | {"REGALIA_HOME": str(tmp_path / "a")}, log=tmp_path / "a.log")
    b = ServerProcess(shared | {"REGALIA_HOME": str(tmp_path / "b")}, log=tmp_path / "b.log")
    a.start()
    try:
        b.start()
        try:
            assert a.api_key is not None
            yield a, b, a.api_key
        finally:
            b.stop()
    finally:
        a.stop()


def api(node: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=node.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def parts_of(data: bytes) -> list[bytes]:
    return [data[i : i + PART] for i in range(0, len(data), PART)]


def send(client: httpx.Client, digest: str, n: int, declared: bytes, sent: bytes) -> int:
    """Ask for part ``n``'s URL declaring ``declared``'s SHA-256, PUT ``sent`` there."""
    got = client.post(
        f"/uploads/{digest}/parts",
        json={"parts": [{"part": n, "sha256": hashlib.sha256(declared).hexdigest()}]},
    )
    assert got.status_code == 200, got.text
    (signed,) = got.json()["parts"]
    assert signed["part"] == n
    # The URL authorizes itself: no Regalia credentials go to the bucket.
    return httpx.put(signed["url"], content=sent, headers=signed["headers"], timeout=60).status_code


def bucket_keys(seaweed: Any, bucket: str) -> list[str]:
    listed = seaweed.client().list_objects_v2(Bucket=bucket).get("Contents", ())
    return sorted(o["Key"] for o in listed)


def test_an_upload_begun_on_a_killed_node_completes_on_the_other(
    nodes: Nodes, seaweed: Any, s3_bucket: str, tmp_path: Path
) -> None:
    a, b, key = nodes
    data = os.urandom(2 * PART + 3 * MiB + 1)
    digest = hashlib.sha256(data).hexdigest()
    pieces = parts_of(data)
    on_a = api(a, key)
    begun = on_a.post("/uploads", json={"digest": digest, "size": len(data)}).json()
    assert begun["direct"] is True and begun["stored"] is False
    assert (begun["part_size"], begun["part_count"], begun["parts_received"]) == (PART, 3, [])

    # The bucket refuses bytes other than those the URL was signed for.
    wrong = bytes(len(pieces[0]))
    assert send(on_a, digest, 0, pieces[0], wrong) == 400
    assert on_a.get(f"/uploads/{digest}").json()["parts_received"] == []
    assert send(on_a, digest, 0, pieces[0], pieces[0]) == 200

    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGKILL)  # node A dies mid-upload
    a.proc.wait(10)

    on_b = api(b, key)
    state = on_b.get(f"/uploads/{digest}").json()
    assert state["parts_received"] == [0] and state["direct"] is True
    resumed = on_b.post("/uploads", json={"digest": digest, "size": len(data)}).json()
    assert resumed["parts_received"] == [0]  # the same upload, not a new one
    early = on_b.post(f"/uploads/{digest}/complete")
    assert early.status_code == 400 and early.json()["error"]["details"]["missing_parts"] == [1, 2]
    for n in (1, 2):  # only the missing parts
        assert send(on_b, digest, n, pieces[n], pieces[n]) == 200
    done = on_b.post(f"/uploads/{digest}/complete")
    assert done.status_code == 201, done.text
    assert done.json() == {"digest": digest, "size": len(data), "check": check_of(data)}
    # Stored once, under its content key; the staging object and parts are gone.
    assert bucket_keys(seaweed, s3_bucket) == [f"deploy/blobs/{digest[:2]}/{digest[2:4]}/{digest}"]
    assert not seaweed.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    got = seaweed.client().get_object(Bucket=s3_bucket, Key=bucket_keys(seaweed, s3_bucket)[0])
    assert got["Body"].read() == data
    # The caller may now reference it: a second start says "stored".
    again = on_b.post("/uploads", json={"digest": digest, "size": len(data)}).json()
    assert again["stored"] is True
    for home in (tmp_path / "a", tmp_path / "b"):
        big = [p for p in home.rglob("*") if p.is_file() and p.stat().st_size >= PART]
        assert big == []


def test_content_that_does_not_hash_to_its_digest_is_never_stored(
    nodes: Nodes, seaweed: Any, s3_bucket: str
) -> None:
    a, _, key = nodes
    claimed = hashlib.sha256(b"the content it claims to be").hexdigest()
    other = os.urandom(PART + 17)  # every part matches its own declared SHA-256
    client = api(a, key)
    begun = client.post("/uploads", json={"digest": claimed, "size": len(other)}).json()
    assert begun["part_count"] == 2
    for n, piece in enumerate(parts_of(other)):
        assert send(client, claimed, n, piece, piece) == 200
    refused = client.post(f"/uploads/{claimed}/complete")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "content_mismatch"
    assert bucket_keys(seaweed, s3_bucket) == []  # nothing under the claimed digest
    assert client.get(f"/uploads/{claimed}").status_code == 404  # the upload is dropped
    assert client.post("/blobs/missing", json={"digests": [claimed]}).json()["missing"] == [claimed]


def test_an_abandoned_upload_frees_its_parts(nodes: Nodes, seaweed: Any, s3_bucket: str) -> None:
    a, b, key = nodes
    data = os.urandom(PART + 1)
    digest = hashlib.sha256(data).hexdigest()
    on_a = api(a, key)
    on_a.post("/uploads", json={"digest": digest, "size": len(data)})
    assert send(on_a, digest, 0, parts_of(data)[0], parts_of(data)[0]) == 200
    assert api(b, key).delete(f"/uploads/{digest}").json() == {"discarded": digest}
    assert not seaweed.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert on_a.get(f"/uploads/{digest}").status_code == 404


def content_key(digest: str) -> str:
    return f"deploy/blobs/{digest[:2]}/{digest[2:4]}/{digest}"


def test_a_whole_put_goes_to_the_content_key_verified_by_the_bucket(
    whole_nodes: Nodes, seaweed: Any, s3_bucket: str, tmp_path: Path
) -> None:
    a, b, key = whole_nodes
    data = os.urandom(3 * PART + 11)
    digest = hashlib.sha256(data).hexdigest()
    on_a = api(a, key)
    begun = on_a.post("/uploads", json={"digest": digest, "size": len(data)}).json()
    assert begun["direct"] is True and begun["stored"] is False
    assert (begun["part_size"], begun["part_count"], begun["parts_received"]) == (
        len(data),
        1,
        [],
    )
    # Its one part is the content: no other SHA-256 may be declared for it.
    other = on_a.post(f"/uploads/{digest}/parts", json={"parts": [{"part": 0, "sha256": "0" * 64}]})
    assert other.status_code == 400 and digest in other.json()["error"]["message"]
    got = on_a.post(f"/uploads/{digest}/parts", json={"parts": [{"part": 0, "sha256": digest}]})
    (signed,) = got.json()["parts"]
    # The bucket refuses any other bytes at the content key's URL, and a
    # request without the signed checksum or upload id does not match.
    assert (
        httpx.put(
            signed["url"], content=os.urandom(len(data)), headers=signed["headers"]
        ).status_code
        == 400
    )
    bare = {"x-amz-checksum-sha256": signed["headers"]["x-amz-checksum-sha256"]}
    assert httpx.put(signed["url"], content=data, headers=bare).status_code == 403
    assert bucket_keys(seaweed, s3_bucket) == []

    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGKILL)  # node A dies before the PUT
    a.proc.wait(10)
    on_b = api(b, key)
    early = on_b.post(f"/uploads/{digest}/complete")
    assert early.status_code == 400 and early.json()["error"]["details"]["missing_parts"] == [0]
    # The URL A signed still works: it needs no node.
    assert (
        httpx.put(signed["url"], content=data, headers=signed["headers"], timeout=60).status_code
        == 200
    )
    assert on_b.get(f"/uploads/{digest}").json()["parts_received"] == [0]
    done = on_b.post(f"/uploads/{digest}/complete")
    assert done.status_code == 201, done.text
    assert done.json() == {"digest": digest, "size": len(data), "check": check_of(data)}
    # Written once, under its content key: no staging object, no multipart upload.
    assert bucket_keys(seaweed, s3_bucket) == [content_key(digest)]
    assert not seaweed.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert on_b.get(f"/uploads/{digest}").status_code == 404
    again = on_b.post("/uploads", json={"digest": digest, "size": len(data)}).json()
    assert again["stored"] is True
    for home in (tmp_path / "a", tmp_path / "b"):
        assert [p for p in home.rglob("*") if p.is_file() and p.stat().st_size >= PART] == []


def test_a_whole_put_of_stored_content_must_send_the_bytes_to_be_granted(
    whole_nodes: Nodes, seaweed: Any, s3_bucket: str
) -> None:
    """Someone else's object under the content key proves nothing: a user who
    never sent the bytes is not granted them, and abandoning the upload leaves
    the stored content alone."""
    a, b, key = whole_nodes
    data = os.urandom(PART)
    digest = hashlib.sha256(data).hexdigest()
    owner = api(a, key)
    owner.post("/uploads", json={"digest": digest, "size": len(data)})
    (signed,) = owner.post(
        f"/uploads/{digest}/parts", json={"parts": [{"part": 0, "sha256": digest}]}
    ).json()["parts"]
    assert httpx.put(signed["url"], content=data, headers=signed["headers"]).status_code == 200
    assert owner.post(f"/uploads/{digest}/complete").status_code == 201

    made = owner.post("/users", json={"name": f"m{uuid.uuid4().hex[:6]}", "org_role": "member"})
    assert made.status_code == 201, made.text
    member = api(b, made.json()["api_key"])
    begun = member.post("/uploads", json={"digest": digest, "size": len(data)}).json()
    assert (
        begun["stored"] is False and begun["parts_received"] == []
    )  # the owner's PUT is not theirs
    refused = member.post(f"/uploads/{digest}/complete")
    assert refused.status_code == 400 and refused.json()["error"]["details"]["missing_parts"] == [0]
    assert member.post("/blobs/missing", json={"digests": [digest]}).json()["missing"] == [digest]
    assert member.delete(f"/uploads/{digest}").json() == {"discarded": digest}
    body = seaweed.client().get_object(Bucket=s3_bucket, Key=content_key(digest))["Body"].read()
    assert body == data  # the stored content is untouched
    # Sending the very bytes (it overwrites the key with themselves) grants them.
    member.post("/uploads", json={"digest": digest, "size": len(data)})
    (mine,) = member.post(
        f"/uploads/{digest}/parts", json={"parts": [{"part": 0, "sha256": digest}]}
    ).json()["parts"]
    assert httpx.put(mine["url"], content=data, headers=mine["headers"]).status_code == 200
    assert member.post(f"/uploads/{digest}/complete").status_code == 201
    assert member.post("/blobs/missing", json={"digests": [digest]}).json()["missing"] == []


def test_a_version_logged_through_one_node_downloads_through_the_other_byte_identical(
    whole_nodes: Nodes,
    seaweed: Any,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK end to end on two nodes: its large file goes to the bucket in
    one PUT through node A's URL, its download comes in ranges through node
    B's redirect; the bucket holds each content once, the nodes none."""
    import regalia

    a, b, key = whole_nodes
    files = {"small.txt": b"a small file\n", "big.bin": os.urandom(4 * PART + 3)}
    src = tmp_path / "src"
    src.mkdir()
    art = regalia.Artifact("zoo", type="model")
    for name, data in files.items():
        (src / name).write_bytes(data)
        art.add_file(str(src / name), name=name)
    monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "client"))
    monkeypatch.setenv("REGALIA_API_KEY", key)
    monkeypatch.setenv("REGALIA_SILENT", "1")
    monkeypatch.setenv("REGALIA_BASE_URL", a.url)
    monkeypatch.setenv("REGALIA_CACHE_DIR", str(tmp_path / "cache-a"))
    regalia.init(entity="vision", project="zoo").log_artifact(art)
    regalia.init(entity="vision", project="zoo").log_artifact(art)  # nothing new is stored

    monkeypatch.setenv("REGALIA_BASE_URL", b.url)
    monkeypatch.setenv("REGALIA_CACHE_DIR", str(tmp_path / "cache-b"))
    out = Path(regalia.Api().artifact("vision/zoo/zoo:latest").download(root=str(tmp_path / "out")))
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    digests = sorted(hashlib.sha256(d).hexdigest() for d in files.values())
    assert bucket_keys(seaweed, s3_bucket) == sorted(content_key(d) for d in digests)
    assert not seaweed.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    for home in (tmp_path / "a", tmp_path / "b"):
        held = [p for p in home.rglob("*") if p.is_file() and p.read_bytes() in files.values()]
        assert held == []
