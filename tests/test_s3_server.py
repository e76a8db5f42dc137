"""``regalia server`` with its blobs in an S3 bucket (a real SeaweedFS): the SDK
logs and downloads through it byte for byte, each content is one object in the
bucket, and nothing of it stays under the server's ``REGALIA_HOME``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from servers import ServerProcess

import regalia
from regalia.errors import NotFound

MiB = 1 << 20


def _server_env(home: Path, seaweed: Any, blob_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGALIA_", "AWS_"))}
    return (
        env
        | seaweed.env()
        | {
            "REGALIA_HOME": str(home),
            "REGALIA_BLOB_URL": blob_url,
            "REGALIA_SILENT": "1",
        }
    )


def test_server_keeps_blobs_in_the_bucket_only(
    seaweed: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "server-home"
    env = _server_env(home, seaweed, f"s3://{s3_bucket}/deploy/one")
    with ServerProcess(env, log=tmp_path / "server.log") as server:
        for name in ("REGALIA_HOME", "REGALIA_DATABASE_URL", "REGALIA_BLOB_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("REGALIA_HOME", str(tmp_path / "client-home"))
        monkeypatch.setenv("REGALIA_CACHE_DIR", str(tmp_path / "client-cache"))
        monkeypatch.setenv("REGALIA_BASE_URL", server.url)
        assert server.api_key is not None
        monkeypatch.setenv("REGALIA_API_KEY", server.api_key)
        monkeypatch.setenv("REGALIA_SILENT", "1")
        files = {"small.txt": b"a small file\n", "big.bin": os.urandom(17 * MiB + 5)}
        src = tmp_path / "src"
        src.mkdir()
        art = regalia.Artifact("zoo", type="model")
        for name, data in files.items():
            (src / name).write_bytes(data)
            art.add_file(str(src / name), name=name)
        run = regalia.init(entity="vision", project="zoo")
        run.log_artifact(art)
        again = regalia.init(entity="vision", project="zoo")
        again.log_artifact(art)  # the same content: nothing new in the bucket

        out = Path(
            regalia.Api().artifact("vision/zoo/zoo:latest").download(root=str(tmp_path / "out"))
        )
        for name, data in files.items():
            assert (out / name).read_bytes() == data

    store = seaweed.client()
    keys = sorted(o["Key"] for o in store.list_objects_v2(Bucket=s3_bucket).get("Contents", ()))
    expected = sorted(
        f"deploy/one/blobs/{d[:2]}/{d[2:4]}/{d}"
        for d in (hashlib.sha256(data).hexdigest() for data in files.values())
    )
    assert keys == expected
    kept = [
        p for p in home.rglob("*") if p.is_file() and p.stat().st_size >= len(files["small.txt"])
    ]
    blobs_here = [p for p in kept if p.read_bytes() in files.values()]
    assert blobs_here == [] and not (home / "blobs").exists()


def test_server_start_names_a_missing_bucket(seaweed: Any, tmp_path: Path) -> None:
    env = _server_env(tmp_path / "home", seaweed, "s3://no-such-bucket/x")
    with pytest.raises(RuntimeError, match="'no-such-bucket' does not exist"):
        ServerProcess(env, log=tmp_path / "server.log").start()


@pytest.fixture
def s3_service(settings, clock, s3_bucket: str):
    from regalia.blobs import S3BlobStore
    from regalia.service import Service

    svc = Service(settings, clock=clock, blobs=S3BlobStore(s3_bucket, "srv"))
    yield svc
    svc.close()


def seaweed_url(svc: Any) -> str:
    return str(svc.blobs.client.meta.endpoint_url)


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_downloads_redirect_to_the_bucket_which_answers_ranges(
    s3_service, settings, tmp_path: Path
) -> None:
    import httpx
    from servers import ThreadServer

    from regalia.service.views import FileEntry

    owner = s3_service.ensure_org()
    key = s3_service.create_api_key(owner)
    data = os.urandom(3 * MiB + 7)
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    blob = s3_service.store_file(owner, path)
    version = s3_service.log_version(
        owner,
        entity=owner.name,
        project="p",
        name="zoo",
        type="model",
        files=[FileEntry("model.bin", blob.digest, blob.size, blob.check)],
        aliases=[],
        tags=[],
    )
    with ThreadServer(settings, s3_service) as server:
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        url = f"/api/v1/versions/{version.membership_id}/blobs/{blob.digest}"
        # The server carries no bytes: after its role checks it redirects to a
        # presigned URL of the bucket, which needs no credentials.
        assert httpx.get(server.url + url).status_code == 401
        redirect = client.get(url)
        assert redirect.status_code == 307
        signed = redirect.headers["location"]
        assert signed.startswith(seaweed_url(s3_service)) and "X-Amz-Signature" in signed
        whole = httpx.get(signed)
        assert whole.status_code == 200 and whole.content == data
        follow = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, follow_redirects=True
        )
        part = follow.get(url, headers={"Range": f"bytes={MiB}-{MiB + 9}"})
        assert part.status_code == 206 and part.content == data[MiB : MiB + 10]
        assert part.headers["content-range"] == f"bytes {MiB}-{MiB + 9}/{len(data)}"
        resumed = follow.get(url, headers={"Range": f"bytes={len(data) - 3}-"})
        assert resumed.content == data[-3:]
        assert httpx.get(signed.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403


@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_the_sweep_abandons_direct_uploads_left_untouched_with_their_parts(
    s3_service, clock, settings, s3_bucket: str
) -> None:
    from datetime import timedelta

    import httpx

    from regalia.server.sweeper import sweep_once
    from regalia.server.uploads import UploadArea

    owner = s3_service.ensure_org()
    data = os.urandom(6 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    begun = s3_service.begin_direct_upload(owner, digest, len(data))
    first = data[: begun.part_size]
    (part,) = s3_service.direct_part_urls(owner, digest, [(0, hashlib.sha256(first).hexdigest())])
    put = httpx.put(part.url, content=first, headers=part.headers)
    assert put.status_code == 200, put.text
    client = s3_service.blobs.client
    area = UploadArea(settings.home / "uploads", settings.upload_part_bytes)
    assert sweep_once(s3_service, area).uploads == 0  # touched just now: kept
    assert s3_service.direct_upload_state(owner, digest).parts_received == [0]

    clock.advance(seconds=timedelta(days=7, seconds=1).total_seconds())
    assert sweep_once(s3_service, area).uploads == 1
    with pytest.raises(NotFound):
        s3_service.direct_upload_state(owner, digest)
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")  # parts freed
