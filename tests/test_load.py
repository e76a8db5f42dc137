"""Load: 8 HTTP clients against a ``regalia server`` with 2 worker processes.

The server is a real ``regalia server --workers 2`` process on 127.0.0.1 (the
workers share the port with ``SO_REUSEPORT``), on the test's database (SQLite
or PostgreSQL). Eight client threads, each with its own
:class:`~regalia.sdk.http.HttpBackend` and its own user (a member of the team
``crew``, which is a member of the ``model`` registry), run 2,000 operations
in all, 250 each, in a seeded-random order:

* ``link``: link one of the client's own pre-logged source versions into ONE
  shared collection (always a new link: the clients' source sets are disjoint);
* ``move``: move the shared alias ``champion`` onto one of the client's links,
  never the one it put it on last, so every call moves it (R5) and must be
  recorded (R11), as in ``test_concurrency``;
* ``pick``: move the client's own alias ``pick-N`` (mostly onto another of its
  links; one in five re-adds it where it already is, a change of nothing that
  history must not record);
* ``resolve``: ``:champion``, ``:pick-N``, ``:latest`` or ``:vK``, each checked
  against what the client knows (its own alias is where it left it, ``latest``
  is at or above its last link, ``vK`` is the link it made);
* ``download``: the manifest, then the file streamed and checked against the
  SHA-256 and the size of the content logged for it.

Every HTTP request and response is counted through httpx event hooks on each
client: no 5xx (nor any 4xx: none is expected), and as many responses as
requests (no connection failure hidden by the SDK's retries); the workers'
own Prometheus counters (``/metrics``, asked of each) add up to the same
requests, none with a 5xx. Afterwards the
database must satisfy the SPEC's invariants (R2 gap-free unique indices and as
many links as link operations, R4 ``latest`` on the highest, R5 each alias on
exactly one version of the collection, R11 one ``alias_add`` row per move that
changed something, chaining from one holder to the next), the server must be
alive with both workers and its log free of errors and tracebacks.

Everything is bounded: a stuck client fails the test, it does not hang it.
Run with ``-s`` to see the throughput and the status histogram.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import ServerProcess
from sqlalchemy import func, select

from regalia.config import Settings
from regalia.sdk.http import HttpBackend
from regalia.service import Actor, Service
from regalia.service.views import FileEntry
from regalia.store.models import Alias, Collection, HistoryEvent, Membership, Registry

pytestmark = pytest.mark.slow

CLIENTS = 8
WORKERS = 2
SEED = 20260101
# Per client: 250 operations, 2,000 in all.
MIX = {"link": 40, "move": 50, "pick": 35, "resolve": 70, "download": 55}
OPS_PER_CLIENT = sum(MIX.values())
LINKS_PER_CLIENT = MIX["link"]
REGISTRY = "model"
COLLECTION = "arena"
TARGET = f"wandb-registry-{REGISTRY}/{COLLECTION}"
SHARED = "champion"
TEAM = "crew"
ENTITY, PROJECT, SOURCE = TEAM, "load", "weights"
RUN_TIMEOUT_S = 120.0  # the whole load; a client still running then fails the test
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
DOWNLOAD_CHUNK = 256 * 1024


def own_alias(n: int) -> str:
    return f"pick-{n}"


@dataclass(frozen=True)
class Source:
    membership_id: int  # the source version's membership in its sequence
    sha256: str
    size: int


@dataclass
class Link:
    membership_id: int
    index: int
    source: Source


class Shared:
    """What the clients share: every link made so far (for downloads of others' links)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.links: list[Link] = []

    def add(self, link: Link) -> None:
        with self.lock:
            self.links.append(link)

    def pick(self, rng: random.Random) -> Link:
        with self.lock:
            return rng.choice(self.links)


@dataclass
class Client:
    """One load client: its plan, what it did and every status it saw."""

    n: int
    name: str
    api_key: str
    sources: list[Source]
    plan: list[str]
    statuses: Counter[int] = field(default_factory=Counter)
    by_op: Counter[tuple[str, int]] = field(default_factory=Counter)
    requests: int = 0
    responses: int = 0
    bad: list[str] = field(default_factory=list)  # 5xx (and 4xx) responses, described
    done: Counter[str] = field(default_factory=Counter)  # operations completed, by kind
    links: list[Link] = field(default_factory=list)
    shared_moves: list[int] = field(default_factory=list)  # indices champion was moved to
    own_changes: list[int] = field(default_factory=list)  # indices pick-N was moved to
    own_noops: int = 0
    own_holder: Link | None = None
    downloaded_bytes: int = 0
    seconds: dict[str, list[float]] = field(default_factory=dict)  # latency by operation
    error: str | None = None
    ready: bool = False  # connected (GET /viewer answered), waiting for the start
    current_op: str = ""


def make_plan(rng: random.Random) -> list[str]:
    """250 operations in a random order; the first two are links (moves need two)."""
    ops = [op for op, count in MIX.items() for _ in range(count)]
    rng.shuffle(ops)
    for position in (0, 1):
        i = ops.index("link", position)
        ops[position], ops[i] = ops[i], ops[position]
    return ops


# -- the client --------------------------------------------------------------------------------
def run_client(
    c: Client, url: str, settings: Settings, shared: Shared, start: threading.Event
) -> None:
    backend: HttpBackend | None = None
    try:
        backend = HttpBackend(url, c.api_key, settings=settings)
        backend.client.timeout = HTTP_TIMEOUT

        def on_request(request: httpx.Request) -> None:
            c.requests += 1

        def on_response(response: httpx.Response) -> None:
            c.responses += 1
            status = response.status_code
            c.statuses[status] += 1
            c.by_op[(c.current_op, status)] += 1
            if status >= 400:
                request = response.request
                c.bad.append(f"{status} {request.method} {request.url.path} ({c.current_op})")

        backend.client.event_hooks["request"].append(on_request)
        backend.client.event_hooks["response"].append(on_response)
        assert backend.actor.name == c.name
        rng = random.Random(SEED * 100 + c.n)
        c.ready = True
        if not start.wait(60):
            raise TimeoutError("the load never started")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        sources = iter(c.sources)
        for op in c.plan:
            if time.monotonic() > deadline:
                raise TimeoutError(f"client {c.n} out of time after {sum(c.done.values())} ops")
            c.current_op = op
            began = time.perf_counter()
            if op == "link":
                do_link(c, backend, next(sources), shared)
            elif op == "move":
                do_move(c, backend, rng)
            elif op == "pick":
                do_pick(c, backend, rng)
            elif op == "resolve":
                do_resolve(c, backend, rng)
            else:
                do_download(c, backend, shared.pick(rng))
            c.seconds.setdefault(op, []).append(time.perf_counter() - began)
            c.done[op] += 1
    except BaseException as exc:  # reported, never lost: the test fails on it
        c.error = f"client {c.n} failed in {c.current_op!r}:\n" + "".join(
            traceback.format_exception(exc)
        )
    finally:
        if backend is not None:
            backend.close()


def do_link(c: Client, backend: HttpBackend, source: Source, shared: Shared) -> None:
    view = backend.link(source.membership_id, TARGET)
    assert view.created, f"a first link of a version must create it (R3): {view}"
    assert view.collection.path == TARGET and "latest" in view.aliases, view  # R4
    if c.links:
        assert view.index > c.links[-1].index, "one client's links are numbered in its order"
    link = Link(view.membership_id, view.index, source)
    c.links.append(link)
    shared.add(link)


def do_move(c: Client, backend: HttpBackend, rng: random.Random) -> None:
    """Move champion onto one of this client's links, not the one it put it on last:
    it is then always on another version (another client's link or that one)."""
    last = c.shared_moves[-1] if c.shared_moves else None
    target = rng.choice([link for link in c.links if link.index != last])
    view = backend.add_aliases(target.membership_id, [SHARED])
    assert view.index == target.index and SHARED in view.aliases, view
    c.shared_moves.append(target.index)


def do_pick(c: Client, backend: HttpBackend, rng: random.Random) -> None:
    """Move this client's own alias; one time in five, re-add it where it is (no change)."""
    holder = c.own_holder
    if holder is not None and rng.random() < 0.2:
        target, changes = holder, False
    else:
        target = rng.choice([link for link in c.links if link is not holder])
        changes = True
    view = backend.add_aliases(target.membership_id, [own_alias(c.n)])
    assert view.index == target.index and own_alias(c.n) in view.aliases, view
    if changes:
        c.own_changes.append(target.index)
    else:
        c.own_noops += 1
    c.own_holder = target


def do_resolve(c: Client, backend: HttpBackend, rng: random.Random) -> None:
    kind = rng.choice(["shared", "own", "latest", "index"])
    if kind == "shared" and c.shared_moves:  # before its own first move it may not exist
        view = backend.resolve(f"{TARGET}:{SHARED}")
        assert view.aliases.count(SHARED) == 1, view
    elif kind == "own" and c.own_holder is not None:
        view = backend.resolve(f"{TARGET}:{own_alias(c.n)}")
        assert view.membership_id == c.own_holder.membership_id, (view, c.own_holder)
        assert own_alias(c.n) in view.aliases
    elif kind == "latest":
        view = backend.resolve(f"{TARGET}:latest")
        assert "latest" in view.aliases and view.index >= c.links[-1].index, view
    else:
        link = rng.choice(c.links)
        view = backend.resolve(f"{TARGET}:v{link.index}")
        assert view.membership_id == link.membership_id and view.index == link.index, view


def do_download(c: Client, backend: HttpBackend, link: Link) -> None:
    [entry] = backend.files(link.membership_id)
    assert entry.path == "model.bin" and entry.digest == link.source.sha256, entry
    assert entry.size == link.source.size
    sha, size = hashlib.sha256(), 0
    with backend.blobs_for(link.membership_id).open(entry.digest) as stream:
        while chunk := stream.read(DOWNLOAD_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    assert (sha.hexdigest(), size) == (link.source.sha256, link.source.size), link
    c.downloaded_bytes += size


# -- preparation -------------------------------------------------------------------------------
def make_clients(service: Service, owner: Actor, tmp_path: Path) -> list[Client]:
    """Eight users in team ``crew`` (a member of the model registry), each with
    its own key, plan and pre-logged source versions (distinct contents)."""
    service.create_team(owner, TEAM)
    service.set_registry_role(owner, REGISTRY, team=TEAM, role="member")
    files = tmp_path / "sources"
    files.mkdir()
    rng = random.Random(SEED)
    clients = []
    for n in range(CLIENTS):
        user, key = service.create_user(owner, f"loader-{n}", org_role="member")
        assert key is not None
        service.add_team_member(owner, TEAM, user.name)
        sources = []
        for j in range(LINKS_PER_CLIENT):
            # Mostly small files; every 16th is 3 MiB (several chunks to stream).
            size = 3 * 1024 * 1024 if j % 16 == 7 else rng.randrange(1024, 96 * 1024)
            data = rng.randbytes(size)
            path = files / f"{n}-{j}.bin"
            path.write_bytes(data)
            blob = service.store_file(owner, path)
            view = service.log_version(
                owner,
                entity=ENTITY,
                project=PROJECT,
                name=SOURCE,
                type="model",
                files=[FileEntry("model.bin", blob.digest, blob.size, blob.check)],
            )
            assert view.created
            sha = hashlib.sha256(data).hexdigest()
            assert blob.digest == sha, blob
            sources.append(Source(view.membership_id, sha, size))
        clients.append(Client(n, user.name, key, sources, make_plan(rng)))
    return clients


def server_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env.update(
        REGALIA_HOME=str(settings.home),
        REGALIA_DATABASE_URL=settings.database_url,
        REGALIA_ORG=settings.org_name,
        REGALIA_CACHE_DIR=str(settings.cache_dir),
        REGALIA_SILENT="1",
    )
    return env


def worker_pids(pid: int) -> list[int]:
    """The server's worker processes (children of its parent process)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process just exited
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            children.append(int(stat.parent.name))
    return children


def worker_metrics(url: str) -> list[Counter[tuple[str, str, str]]]:
    """Each worker's request counters (method, route, status) from its /metrics, the
    monitoring routes left out. Every new connection lands on one worker, chosen by
    the kernel; ask on new connections until two distinct workers have answered."""
    seen: dict[tuple[Any, ...], Counter[tuple[str, str, str]]] = {}
    for _ in range(200):
        text = httpx.get(f"{url}/metrics", timeout=10).text
        counts: Counter[tuple[str, str, str]] = Counter()
        for line in text.splitlines():
            if line.startswith("regalia_http_requests_total{"):
                labels, value = line[len("regalia_http_requests_total{") :].rsplit("} ", 1)
                d = dict(part.split("=", 1) for part in labels.split(","))
                key = tuple(d[k].strip('"') for k in ("method", "route", "status"))
                if key[1] not in ("/metrics", "/healthz"):
                    counts[key] += int(float(value))
        seen[tuple(sorted(counts.items()))] = counts
        if len(seen) == WORKERS:
            break
    return list(seen.values())


# -- the invariants, read from the database ----------------------------------------------------
def collection_state(service: Service, owner: Actor) -> dict[str, Any]:
    def fn(repo: Any) -> dict[str, Any]:
        s = repo.s
        coll = s.execute(
            select(Collection.id, Collection.next_index, Collection.member_count)
            .join(Registry, Registry.id == Collection.registry_id)
            .where(
                Registry.org_id == owner.org_id,
                Registry.name_key == REGISTRY,
                Collection.name_key == COLLECTION,
            )
        ).one()
        members = list(
            s.execute(
                select(Membership.id, Membership.version_index)
                .where(Membership.collection_id == coll.id)
                .order_by(Membership.version_index)
            )
        )
        aliases = list(
            s.execute(
                select(Alias.name_key, Alias.membership_id, Membership.collection_id)
                .outerjoin(Membership, Membership.id == Alias.membership_id)
                .where(Alias.collection_id == coll.id)
            )
        )
        history = list(
            s.execute(
                select(
                    HistoryEvent.action,
                    HistoryEvent.alias_key,
                    HistoryEvent.version_index,
                    HistoryEvent.actor_name,
                    HistoryEvent.details,
                )
                .where(HistoryEvent.collection_id == coll.id)
                .order_by(HistoryEvent.id)
            )
        )
        direct = s.scalar(
            select(func.count()).select_from(Membership).where(Membership.collection_id == coll.id)
        )
        return {
            "coll": coll,
            "members": members,
            "aliases": aliases,
            "history": history,
            "count": direct,
        }

    return service.db.read(fn)


def check_chain(rows: list[Any], alias: str) -> None:
    """R11: each move starts where the previous one (in commit order) left the alias."""
    assert rows, f"no history for {alias}"
    assert "from_index" not in rows[0].details, f"the first add of {alias} creates it"
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.details.get("from_index") == before.version_index, (alias, before, after)
        assert after.version_index != before.version_index, (alias, before, after)


def check_invariants(service: Service, owner: Actor, clients: list[Client]) -> dict[str, list[int]]:
    state = collection_state(service, owner)
    coll, members, aliases, history = (
        state["coll"],
        state["members"],
        state["aliases"],
        state["history"],
    )
    link_ops = sum(c.done["link"] for c in clients)
    assert link_ops == CLIENTS * LINKS_PER_CLIENT

    # R2: as many links as link operations, numbered v0..vN-1, no gap, no repeat.
    indices = [m.version_index for m in members]
    assert indices == list(range(link_ops)), indices[:20]
    assert state["count"] == link_ops
    assert coll.next_index == link_ops and coll.member_count == link_ops
    made = sorted(link.index for c in clients for link in c.links)
    assert made == list(range(link_ops))
    by_index = {m.version_index: m.id for m in members}
    for c in clients:
        for link in c.links:
            assert by_index[link.index] == link.membership_id

    # R5: every alias on exactly one membership, of this collection.
    holders: dict[str, list[int]] = {}
    member_ids = {m.id: m.version_index for m in members}
    for row in aliases:
        assert row.collection_id == coll.id, f"alias {row.name_key} on a foreign membership"
        holders.setdefault(row.name_key, []).append(member_ids[row.membership_id])
    expected = {"latest", SHARED} | {own_alias(c.n) for c in clients if c.own_holder}
    assert set(holders) == expected
    assert all(len(v) == 1 for v in holders.values()), holders

    # R4: latest on the highest index, and it moved onto each new link in order.
    assert holders["latest"] == [link_ops - 1]
    latest_rows = [r for r in history if r.action == "alias_add" and r.alias_key == "latest"]
    assert [r.version_index for r in latest_rows] == list(range(link_ops))

    # R11: one link row per link; one alias_add row per move that changed something.
    links = [r for r in history if r.action == "link"]
    assert len(links) == link_ops
    assert Counter(r.actor_name for r in links) == {c.name: LINKS_PER_CLIENT for c in clients}
    assert not [r for r in history if r.action not in ("link", "alias_add")]

    shared_rows = [r for r in history if r.action == "alias_add" and r.alias_key == SHARED]
    assert len(shared_rows) == sum(len(c.shared_moves) for c in clients)
    check_chain(shared_rows, SHARED)
    assert holders[SHARED] == [shared_rows[-1].version_index]
    for c in clients:
        mine = [r.version_index for r in shared_rows if r.actor_name == c.name]
        assert mine == c.shared_moves, f"{c.name}'s {SHARED} moves recorded out of order"

        own = [r for r in history if r.action == "alias_add" and r.alias_key == own_alias(c.n)]
        assert [r.version_index for r in own] == c.own_changes, c.name
        assert {r.actor_name for r in own} <= {c.name}
        if c.own_holder is not None:
            check_chain(own, own_alias(c.n))
            assert holders[own_alias(c.n)] == [c.own_holder.index]
    return holders


# -- the test ------------------------------------------------------------------------------------
def test_load_8_clients_2000_ops_2_workers(
    service: Service, owner: Actor, settings: Settings, tmp_path: Path, db_kind: str
) -> None:
    began = time.monotonic()
    clients = make_clients(service, owner, tmp_path)
    prepared = time.monotonic() - began
    assert sum(len(c.plan) for c in clients) == 2000
    log = tmp_path / "server.log"
    shared = Shared()
    start = threading.Event()
    with ServerProcess(server_env(settings), workers=WORKERS, log=log) as server:
        assert server.proc is not None
        assert len(worker_pids(server.proc.pid)) == WORKERS
        threads = [
            threading.Thread(
                target=run_client,
                args=(c, server.url, settings, shared, start),
                name=f"load-client-{c.n}",
                daemon=True,
            )
            for c in clients
        ]
        for t in threads:
            t.start()
        connected = time.monotonic() + 30
        while sum(c.ready for c in clients) < CLIENTS and time.monotonic() < connected:
            if any(c.error for c in clients):
                break
            time.sleep(0.01)
        started = time.monotonic()
        start.set()
        for t in threads:
            t.join(max(0.0, started + RUN_TIMEOUT_S + 10 - time.monotonic()))
        elapsed = time.monotonic() - started
        stuck = [t.name for t in threads if t.is_alive()]
        alive = server.proc.poll() is None and len(worker_pids(server.proc.pid)) == WORKERS
        final = httpx.get(
            f"{server.url}/api/v1/resolve",
            params={"path": f"{TARGET}:{SHARED}"},
            headers={"Authorization": f"Bearer {clients[0].api_key}"},
            timeout=10,
        )
        per_worker = worker_metrics(server.url)
        stop_code = server.stop()

    statuses: Counter[int] = sum((c.statuses for c in clients), Counter())
    by_op: Counter[tuple[str, int]] = sum((c.by_op for c in clients), Counter())
    ops = sum(sum(c.done.values()) for c in clients)
    downloaded = sum(c.downloaded_bytes for c in clients)
    print(
        f"\n[{db_kind}] {ops} ops by {CLIENTS} clients against {WORKERS} workers in "
        f"{elapsed:.2f} s: {ops / elapsed:.0f} ops/s, "
        f"{sum(statuses.values())} HTTP responses ({sum(statuses.values()) / elapsed:.0f}/s), "
        f"{downloaded / 2**20:.1f} MiB downloaded (preparation {prepared:.1f} s)"
    )
    print(f"[{db_kind}] operations: {dict(sum((c.done for c in clients), Counter()))}")
    print(f"[{db_kind}] status histogram: {dict(sorted(statuses.items()))}")
    print(f"[{db_kind}] by operation and status: {dict(sorted(by_op.items()))}")
    seconds: dict[str, list[float]] = {}
    for c in clients:
        for op, values in c.seconds.items():
            seconds.setdefault(op, []).extend(values)
    latency = {
        op: f"median {statistics.median(v) * 1000:.1f} ms, p95 "
        f"{statistics.quantiles(v, n=20)[-1] * 1000:.1f} ms"
        for op, v in sorted(seconds.items())
    }
    print(f"[{db_kind}] latency: {latency}")
    print(f"[{db_kind}] requests per worker: {[sum(w.values()) for w in per_worker]}")

    assert not stuck, f"clients still running after {RUN_TIMEOUT_S:.0f} s: {stuck}"
    errors = [c.error for c in clients if c.error]
    assert not errors, "\n".join(errors)
    assert ops == 2000
    for c in clients:
        assert c.done == Counter(MIX), (c.name, c.done)

    # Zero 5xx; and no 4xx either: every operation is one a member may do on what
    # exists (a client resolves champion only after its own first move of it).
    bad = [b for c in clients for b in c.bad]
    assert not [s for s in statuses if s >= 500], bad[:20]
    assert not bad, bad[:20]
    # No request went unanswered (the SDK retries connection failures silently).
    assert [c.requests for c in clients] == [c.responses for c in clients]

    # The server survived with both workers, answered after the load, stopped cleanly.
    assert alive, "the server or one of its workers died during the load"
    assert final.status_code == 200, final.text
    # Both workers answer; together (the kernel spreads connections between them)
    # they counted what the clients saw, and no 5xx.
    assert len(per_worker) == WORKERS, per_worker
    server_side: Counter[str] = Counter()
    for w in per_worker:
        for (_, _, status), count in w.items():
            server_side[status] += count
    assert not [s for s in server_side if int(s) >= 500], server_side
    # Every client response, plus each client's GET /viewer and the final resolve.
    assert server_side.total() == statuses.total() + CLIENTS + 1, (server_side, statuses)
    assert stop_code == 0
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    for level in ('"level": "error"', '"level": "critical"'):
        assert level not in text, text[-3000:]

    holders = check_invariants(service, owner, clients)
    # The source artifact the links came from is untouched: v0..vN-1, latest on the last.
    total = CLIENTS * LINKS_PER_CLIENT
    assert service.resolve(owner, f"{ENTITY}/{PROJECT}/{SOURCE}").index == total - 1
    source_indices = [
        service.get_version(owner, src.membership_id).index for c in clients for src in c.sources
    ]
    assert sorted(source_indices) == list(range(total))
    assert final.json()["index"] == holders[SHARED][0]
