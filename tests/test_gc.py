"""Garbage collection (issue 15): unreferenced contents are freed after the grace
period, never one a version or an upload in flight uses; SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from regalia.errors import ContentNotUploaded, PermissionDenied
from regalia.service import Service
from regalia.service.views import FileEntry
from regalia.store.models import Blob, BlobCheck, BlobClaim, BlobGrant, BlobMd5

GRACE = timedelta(hours=24)


def _age(service, clock, *, days: float = 2) -> None:
    """Move time on by ``days`` and make every stored object as old as that."""
    clock.advance(days=days)
    when = (clock.now - timedelta(days=days)).timestamp()
    for info in service.blobs.iter_blobs():
        os.utime(service.blobs.path(info.digest), (when, when))


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"f-{len(list(tmp_path.iterdir()))}"
    path.write_bytes(data)
    return path


def _rows(service, digest: str) -> dict[str, int]:
    def fn(repo):
        return {
            m.__tablename__: repo.s.scalar(
                select(func.count()).select_from(m).where(m.digest == digest)
            )
            for m in (Blob, BlobCheck, BlobMd5, BlobGrant, BlobClaim)
        }

    return service.db.read(fn)


def _log(service, actor, blob, name="zoo"):
    return service.log_version(
        actor,
        entity=actor.name,
        project="proj",
        name=name,
        type="model",
        files=[FileEntry("model.bin", blob.digest, blob.size, blob.check)],
    )


def test_gc_frees_unreferenced_old_content_and_keeps_the_rest(
    service, owner, make_version, clock, tmp_path
):
    kept = make_version(owner, b"referenced bytes")
    kept_digest = service.files(owner, kept.membership_id)[0].digest
    garbage = service.store_file(owner, _file(tmp_path, b"sent, never logged"))
    service.record_md5s({garbage.digest: "0" * 32})
    _age(service, clock)
    young = service.store_file(owner, _file(tmp_path, b"sent just now"))

    report = service.collect_garbage(owner, grace=GRACE)

    assert report.freed == [garbage.digest]
    assert (report.freed_blobs, report.freed_bytes) == (1, garbage.size)
    assert (report.scanned, report.kept_referenced, report.kept_young) == (3, 1, 1)
    assert not report.dry_run and report.failed == 0 and report.grace_s == GRACE.total_seconds()
    assert not service.blobs.has(garbage.digest)
    assert service.blobs.has(kept_digest) and service.blobs.has(young.digest)
    # Every row about the freed content is gone with it.
    assert set(_rows(service, garbage.digest).values()) == {0}
    assert _rows(service, kept_digest)["blobs"] == 1
    # A second collection finds nothing more.
    assert service.collect_garbage(owner, grace=GRACE).freed == []


def test_gc_dry_run_deletes_nothing_and_reports_the_same(service, owner, clock, tmp_path):
    blob = service.store_file(owner, _file(tmp_path, b"garbage"))
    _age(service, clock)
    dry = service.collect_garbage(owner, grace=GRACE, dry_run=True)
    assert dry.dry_run and dry.freed == [blob.digest] and dry.freed_bytes == blob.size
    assert service.blobs.has(blob.digest)
    assert _rows(service, blob.digest)["blob_checks"] == 1
    real = service.collect_garbage(owner, grace=GRACE)
    assert (real.freed, real.freed_bytes) == (dry.freed, dry.freed_bytes)
    assert not service.blobs.has(blob.digest)


def test_gc_frees_the_content_of_deleted_versions_but_not_shared_content(
    service, owner, make_version, clock
):
    a = make_version(owner, b"only in a", name="a")
    shared_a = make_version(owner, b"shared", name="b")
    shared_b = make_version(owner, b"shared", name="c")
    only_a = service.files(owner, a.membership_id)[0].digest
    shared = service.files(owner, shared_a.membership_id)[0].digest
    service.delete_version(owner, a.membership_id)
    service.delete_version(owner, shared_a.membership_id)
    _age(service, clock)
    assert service.collect_garbage(owner, grace=GRACE).freed == [only_a]
    assert service.blobs.has(shared)
    assert service.files(owner, shared_b.membership_id)[0].digest == shared


def test_gc_frees_an_orphan_object_with_no_row_at_all(service, owner, clock, tmp_path):
    # As a crash between the store and the database leaves it: the object only.
    orphan = service.blobs.put_file(_file(tmp_path, b"orphan"))
    assert set(_rows(service, orphan.digest).values()) == {0}
    _age(service, clock)
    assert service.collect_garbage(owner, grace=GRACE).freed == [orphan.digest]
    assert not service.blobs.has(orphan.digest)


def test_gc_spares_content_claimed_by_an_already_stored_answer(service, owner, clock, tmp_path):
    blob = service.store_file(owner, _file(tmp_path, b"dedupe me"))
    _age(service, clock)
    # The client asks, is told "stored already" (nothing to send) and commits later.
    assert service.missing_blobs(owner, [blob.digest]) == []
    assert service.collect_garbage(owner, grace=GRACE).kept_young == 1
    _log(service, owner, blob)
    _age(service, clock)
    assert service.collect_garbage(owner, grace=GRACE).kept_referenced == 1
    assert service.blobs.has(blob.digest)


def test_gc_keeps_the_files_of_a_wandb_draft_until_it_is_committed(service, owner, clock, tmp_path):
    from regalia.store.models import WandbDraft, WandbDraftFile

    blob = service.store_file(owner, _file(tmp_path, b"wandb upload"))

    def fn(repo):
        draft = repo.add(
            WandbDraft(
                org_id=owner.org_id,
                user_id=owner.user_id,
                entity=owner.name,
                project="proj",
                name="zoo",
                name_key="zoo",
                type="model",
                digest="d" * 32,
                aliases=[],
                tags=[],
                created_at=clock(),
            )
        )
        repo.add(
            WandbDraftFile(
                draft_id=draft.id, path="a.bin", md5="0" * 32, digest=blob.digest, size=blob.size
            )
        )

    service.db.write(fn)
    _age(service, clock)
    report = service.collect_garbage(owner, grace=GRACE)
    assert report.freed == [] and report.kept_referenced == 1


def test_a_commit_of_freed_content_fails_cleanly_and_succeeds_once_sent_again(
    service, owner, clock, tmp_path
):
    path = _file(tmp_path, b"freed before the commit")
    blob = service.store_file(owner, path)
    _age(service, clock)
    assert service.collect_garbage(owner, grace=GRACE).freed == [blob.digest]
    with pytest.raises(ContentNotUploaded):
        _log(service, owner, blob)
    assert service.missing_blobs(owner, [blob.digest]) == [blob.digest]
    service.store_file(owner, path)
    view = _log(service, owner, blob)
    with service.blobs.open(blob.digest) as f:
        assert f.read() == b"freed before the commit"
    assert view.file_count == 1


def test_gc_is_for_org_admins(service, owner):
    service.create_user(owner, "mia", org_role="member")
    mia = next(iter(service.db.read(lambda r: [r.user_by_name(owner.org_id, "mia")])))
    actor = service.db.read(lambda r: service._actor(r, mia))
    with pytest.raises(PermissionDenied):
        service.collect_garbage(actor, grace=GRACE)


def test_gc_racing_commits_that_dedupe_never_loses_a_committed_file(settings, tmp_path):
    """Writers on their own services (as on several nodes) log versions whose
    content dedupes against an unreferenced content stored earlier ("stored
    already": nothing sent), and delete some again, while collections with no
    grace at all run on another service. Every commit either succeeds, or fails
    cleanly and succeeds once the bytes are sent again; every committed version
    left reads back byte-identical."""
    services = [Service(settings) for _ in range(4)]
    try:
        owner = services[0].ensure_org()
        keys = [(n, i) for n in range(3) for i in range(12)]
        contents = {(n, i): f"content {n} {i}\n".encode() * 200 for n, i in keys}
        sources = {k: _file(tmp_path, v) for k, v in contents.items()}
        stored = services[0].store_files(owner, [sources[k] for k in keys])
        blobs = dict(zip(keys, stored, strict=True))
        stop = threading.Event()
        kept: dict[int, bytes] = {}
        retried = [0]
        errors: list[BaseException] = []
        collections = [0]
        freed = [0]

        def writer(svc: Service, n: int) -> None:
            try:
                for i in range(12):
                    blob = blobs[n, i]
                    for _attempt in range(5):
                        if svc.missing_blobs(owner, [blob.digest]):
                            svc.store_file(owner, sources[n, i])  # told to send: send it
                        try:
                            view = _log(svc, owner, blob, name=f"w{n}-{i}")
                            break
                        except ContentNotUploaded:
                            retried[0] += 1
                    else:
                        raise AssertionError("a commit failed five times")
                    if i % 3 == 2:
                        svc.delete_version(owner, view.membership_id)
                    else:
                        kept[view.membership_id] = contents[n, i]
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        def collector(svc: Service) -> None:
            try:
                while not stop.is_set():
                    freed[0] += svc.sweep_garbage(timedelta(0)).freed_blobs
                    collections[0] += 1
            except BaseException as exc:
                errors.append(exc)

        writers = [
            threading.Thread(target=writer, args=(svc, n)) for n, svc in enumerate(services[1:])
        ]
        gc = threading.Thread(target=collector, args=(services[0],))
        started = time.monotonic()
        gc.start()
        for t in writers:
            t.start()
        for t in writers:
            t.join(timeout=120)
        stop.set()
        gc.join(timeout=60)
        assert not errors, errors
        assert time.monotonic() - started < 120
        assert collections[0] > 1 and len(kept) == 24
        check = services[0]
        for mid, data in kept.items():
            (entry,) = check.files(owner, mid)
            with check.blobs.open(entry.digest) as f:
                assert f.read() == data
        # Nothing referenced is missing, and once idle a collection keeps it all.
        assert check.sweep_garbage(timedelta(0)).kept_referenced == 24
        for mid in kept:
            assert check.blobs.has(check.files(owner, mid)[0].digest)
    finally:
        for svc in services:
            svc.close()


def test_regalia_gc_prints_what_it_freed_in_process_and_through_a_server(
    sdk_env, service, clock, tmp_path, workdir
):
    import json

    from click.testing import CliRunner

    from regalia.cli.main import cli

    owner = service.ensure_org()
    blob = service.store_file(owner, _file(tmp_path, b"garbage for the command"))
    _age(service, clock)

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    dry = run("gc", "--dry-run")
    assert f"would free {blob.digest}" in dry and "would free 1 blobs" in dry
    assert service.blobs.has(blob.digest)
    report = json.loads(run("gc", "--grace", "1d", "--json"))
    assert report["freed"] == [blob.digest] and report["freed_bytes"] == blob.size
    assert report["grace_s"] == 86400 and not report["dry_run"]
    assert not service.blobs.has(blob.digest)
    assert "freed 0 blobs" in run("gc")
    bad = CliRunner().invoke(cli, ["gc", "--grace", "soon"])
    assert bad.exit_code == 2 and "--grace" in bad.output


def test_the_server_collects_on_its_own_schedule_from_the_environment(
    monkeypatch, service, owner, clock, tmp_path
):
    from regalia.config import Settings, parse_duration
    from regalia.errors import InvalidRequest
    from regalia.server.sweeper import collect_once

    assert [parse_duration(t) for t in ("90s", "30m", "24h", "7d", "15", "0")] == [
        90,
        1800,
        86400,
        604800,
        15,
        0,
    ]
    for bad in ("soon", "-1h", "1w", ""):
        with pytest.raises(InvalidRequest):
            parse_duration(bad, "REGALIA_GC_GRACE")
    monkeypatch.setenv("REGALIA_GC_INTERVAL", "0")
    monkeypatch.setenv("REGALIA_GC_GRACE", "2d")
    settings = Settings.from_env(home=tmp_path / "h")
    assert (settings.gc_interval_s, settings.gc_grace_s) == (0, 172800)
    blob = service.store_file(owner, _file(tmp_path, b"periodic garbage"))
    _age(service, clock, days=1)
    assert collect_once(service, settings.gc_grace_s).freed == []  # within its grace
    _age(service, clock, days=3)
    assert collect_once(service, settings.gc_grace_s).freed == [blob.digest]
