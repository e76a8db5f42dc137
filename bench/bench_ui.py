"""Figures of the web UI and the search box at 100,000 versions.

    .venv/bin/python bench/bench_ui.py               # 100,000 versions (~2 minutes)
    .venv/bin/python bench/bench_ui.py --versions 20000
    .venv/bin/python bench/bench_ui.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

Seeding: a few versions are logged and linked through the service (so the
store holds real projects, sequences, registry collections, a blob and the
``latest`` aliases); the rest are written in bulk with SQL in the same shape
(one row per version, per membership in its sequence and in its registry
collection, a file row, tags on every 5th version, a custom alias on every
10th link, ``latest`` moved to the newest), because logging 100,000 versions
one by one would take most of an hour on this machine. ``ANALYZE`` ends the
seeding, as autovacuum would after such a load. Half of the versions
go into one collection (``busy``), the rest into four others.

Then a ``regalia server`` process (as in ``bench_server.py``) answers, on one
kept-alive connection:

* ``GET /api/v1/search?q=...`` for an alias (``cand-4240``), a tag prefix
  (``tag-7``), a collection name (``busy``), a registry description word,
  version description words (``build 4240``, full-text) and a miss
  (``zzz``): median and p95 of N requests each, interleaved;
* the page of the busiest collection (``/registries/model/collections/busy``:
  its card, the newest 50 of its versions, its history) and a version page,
  through a logged-in session: median and p95.

This is a benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import Row, ScratchDatabase, Server, load, log, percentile, print_table  # noqa: E402

COLLECTIONS = {"busy": 0.5, "resnet": 0.125, "bert": 0.125, "vit": 0.125, "yolo": 0.125}
BATCH = 5000


def seed(home: Path, database_url: str | None, total: int) -> float:
    """Fill the store; return the seconds it took."""
    from sqlalchemy import insert, select, text, update

    from regalia.config import Settings
    from regalia.service import Service
    from regalia.service.views import FileEntry
    from regalia.store.models import Alias, Collection, Membership, Version, VersionFile, VersionTag

    t0 = time.perf_counter()
    settings = Settings.from_env(home=home)
    if database_url:
        import dataclasses

        settings = dataclasses.replace(settings, database_url=database_url)
    svc = Service(settings)
    owner = svc.ensure_org()
    svc.update_registry(owner, "model", description="Production models of the vision team")
    blob_file = home / "weights.bin"
    blob_file.write_bytes(os.urandom(4096))
    blob = svc.store_file(owner, blob_file)
    entry = FileEntry("model.bin", blob.digest, blob.size, blob.check)
    first: dict[str, tuple[int, int]] = {}  # collection -> (sequence id, portfolio id)
    for name in COLLECTIONS:
        v = svc.log_version(owner, entity=owner.name, project="zoo", name=f"{name}-src",
                            type="model", files=[entry], metadata={"seed": 0})  # fmt: skip
        link = svc.link(owner, v.membership_id, f"wandb-registry-model/{name}")
        first[name] = (v.collection.id, link.collection.id)
    svc.update_collection(owner, "model", "busy", description="# Busy\n\nHalf of all versions.",
                          add_tags=["Vision", "Production"])  # fmt: skip
    now = datetime.now(UTC)
    with svc.db.engine.begin() as conn:
        for name, share in COLLECTIONS.items():
            seq_id, port_id = first[name]
            n = int(total * share) - 1
            log(f"seeding {n + 1:,} versions into {name}")
            for start in range(1, n + 1, BATCH):
                idx = range(start, min(n + 1, start + BATCH))
                when = [now - timedelta(seconds=total - i) for i in idx]
                rows = conn.execute(insert(Version).returning(Version.id, Version.version_index), [
                    {"sequence_id": seq_id, "version_index": i,
                     "digest": hashlib.sha256(f"{name}{i}".encode()).hexdigest(),
                     "size": blob.size, "file_count": 1, "description": f"{name} build {i}",
                     "metadata_": {"acc": round(0.5 + (i % 500) / 1000, 3), "epoch": i % 90},
                     "created_by": owner.user_id, "created_at": w, "updated_at": w}
                    for i, w in zip(idx, when, strict=True)
                ]).all()  # fmt: skip
                ids = {r.version_index: r.id for r in rows}
                conn.execute(insert(VersionFile), [
                    {"version_id": vid, "path": "model.bin", "digest": blob.digest,
                     "size": blob.size, "check": blob.check} for vid in ids.values()])  # fmt: skip
                conn.execute(insert(VersionTag), [
                    {"version_id": vid, "tag": f"tag-{i % 100}"}
                    for i, vid in ids.items() if i % 5 == 0])  # fmt: skip
                for coll in (seq_id, port_id):
                    conn.execute(insert(Membership), [
                        {"collection_id": coll, "version_id": vid, "version_index": i,
                         "created_by": owner.user_id, "created_at": now}
                        for i, vid in ids.items()])  # fmt: skip
                links = conn.execute(select(Membership.id, Membership.version_index).where(
                    Membership.collection_id == port_id,
                    Membership.version_index.in_(list(idx)))).all()  # fmt: skip
                conn.execute(insert(Alias), [
                    {"collection_id": port_id, "membership_id": m.id,
                     "name": f"cand-{m.version_index}" if name == "busy"
                     else f"{name}-cand-{m.version_index}",
                     "name_key": f"cand-{m.version_index}" if name == "busy"
                     else f"{name}-cand-{m.version_index}", "updated_at": now}
                    for m in links if m.version_index % 10 == 0])  # fmt: skip
            for coll in (seq_id, port_id):
                newest = conn.execute(
                    select(Membership.id).where(
                        Membership.collection_id == coll, Membership.version_index == n
                    )
                ).scalar_one()
                conn.execute(
                    update(Alias)
                    .where(Alias.collection_id == coll, Alias.name_key == "latest")
                    .values(membership_id=newest)
                )
                conn.execute(update(Collection).where(Collection.id == coll)
                             .values(next_index=n + 1, member_count=n + 1))  # fmt: skip
    with svc.db.engine.begin() as conn:  # statistics, as autovacuum would gather them
        conn.execute(text("ANALYZE"))
    svc.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--versions", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=200, help="per figure")
    p.add_argument("--database-url", help="a PostgreSQL server (a scratch database)")
    p.add_argument("--dir", help="where to make the temporary folder")
    args = p.parse_args(argv)

    import httpx

    work = Path(tempfile.mkdtemp(prefix="regalia-bench-ui-", dir=args.dir))
    home = work / "server"
    home.mkdir()
    scratch = ScratchDatabase(args.database_url) if args.database_url else None
    db = f"PostgreSQL (database {scratch.name})" if scratch else "SQLite (embedded)"
    server = Server(home, 1, scratch.url if scratch else None, work / "server.log")
    os.environ["REGALIA_ORG"] = server.env["REGALIA_ORG"]
    os.environ["REGALIA_SILENT"] = "1"
    rows: list[Row] = []
    load_before = load()
    try:
        took = seed(home, scratch.url if scratch else None, args.versions)
        rows.append(Row("seed", f"{took:.0f} s", note=f"{args.versions:,} versions, {db}"))
        server.start()
        key = _key(home, scratch.url if scratch else None)
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
        n = min(4240, args.versions // 2 - 10) // 10 * 10  # a linked version with an alias
        queries = {
            f"alias cand-{n}": f"cand-{n}",
            "tag prefix tag-7": "tag-7",
            "collection busy": "busy",
            "registry word vision": "vision",
            "description words build 4240": "build 4240",
            "miss zzz": "zzz",
        }
        times: dict[str, list[float]] = {k: [] for k in queries}
        counts: dict[str, int] = {}
        for _ in range(args.requests):
            for label, q in queries.items():
                t0 = time.perf_counter()
                r = api.get("/api/v1/search", params={"q": q})
                times[label].append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                d = r.json()
                counts[label] = len(d["registries"]) + len(d["collections"]) + len(d["versions"])
        for label, ms in times.items():
            rows.append(Row(f"search API: {label}", f"{statistics.median(ms):.1f} ms",
                            goal="<= 100 ms", ok=percentile(ms, 0.95) <= 100,
                            note=f"median; p95 {percentile(ms, 0.95):.1f} ms; "
                            f"{counts[label]} results; N={len(ms)}"))  # fmt: skip
        browser = httpx.Client(base_url=server.url)
        nonce = browser.get("/login").text.split('name="nonce" value="', 1)[1].split('"', 1)[0]
        browser.post("/login", data={"api_key": key, "next": "/", "nonce": nonce})
        pages = {"busiest collection page": "/registries/model/collections/busy",
                 "version page": f"/registries/model/collections/busy/v{n}",
                 "search page": f"/search?q=cand-{n}"}  # fmt: skip
        for label, url in pages.items():
            ms = []
            for _ in range(max(20, args.requests // 4)):
                t0 = time.perf_counter()
                r = browser.get(url)
                ms.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, (url, r.status_code)
            rows.append(Row(label, f"{statistics.median(ms):.1f} ms",
                            note=f"median; p95 {percentile(ms, 0.95):.1f} ms; "
                            f"{len(r.content) // 1024} KiB; N={len(ms)}"))  # fmt: skip
    finally:
        server.stop()
        if scratch:
            scratch.drop()
    print_table(rows, f"Regalia UI and search bench: {args.versions:,} versions, {db}; "
                      f"load {load_before} -> {load()}")  # fmt: skip
    return 0


def _key(home: Path, database_url: str | None) -> str:
    import dataclasses

    from regalia.config import Settings
    from regalia.service import Service

    settings = Settings.from_env(home=home)
    if database_url:
        settings = dataclasses.replace(settings, database_url=database_url)
    svc = Service(settings)
    try:
        return svc.create_api_key(svc.ensure_org())
    finally:
        svc.close()


if __name__ == "__main__":
    raise SystemExit(main())
