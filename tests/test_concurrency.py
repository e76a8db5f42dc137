"""Concurrency: four OS processes log, link and move one alias at once (R2, R4, R5, R11).

Each worker process builds its own :class:`Service` from the test's settings and
acts as its own user (a member of the team ``crew``, which is a member of the
``model`` registry). Phase 1: the workers log 50 distinct versions each into one
shared source artifact ``crew/proj/weights``. Phase 2: each links its 50 versions
into ONE registry collection and, interleaved with the links, moves the alias
``champion`` 200 times onto its own links, never onto the same link twice in a
row. Workers' link sets are disjoint, so every one of those calls moves the
alias off another version (the very first one creates it): 800 calls, 800
changes, each of which R11 must record.

While phase 2 runs, this process reads the collection over and over and checks
R4 and R5 in every snapshot: ``champion`` resolves and sits on exactly one
version, ``latest`` sits on exactly one version, the highest one, and the
indices form the gap-free prefix ``v0..vN``. Workers report every exception
(and every warning their loggers emit) back to this process; nothing may fail,
in particular no ``database is locked``.

Everything is bounded in time: a stuck worker fails the test, it does not hang it.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import random
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from regalia.config import Settings
from regalia.errors import NotFound
from regalia.service import Actor, Service
from regalia.service.views import FileEntry
from regalia.store.models import Alias, Collection, HistoryEvent, Membership, Registry

pytestmark = pytest.mark.slow

WORKERS = 4
LINKS_PER_WORKER = 50
MOVES_PER_WORKER = 200
REGISTRY = "model"
COLLECTION = "arena"
TARGET = f"wandb-registry-{REGISTRY}/{COLLECTION}"
ALIAS = "champion"
TEAM = "crew"
PROJECT = "proj"
SOURCE = "weights"
START_TIMEOUT_S = 120.0  # spawning 4 interpreters, importing SQLAlchemy, storing 200 files
RUN_TIMEOUT_S = 240.0  # logging, linking and moving, once all workers are up
MIN_CONCURRENT_READS = 10


# -- the worker (module level: the 'spawn' context imports it by name) ---------------------------
class _Collect(logging.Handler):
    """Keeps every warning or error the worker's libraries log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _worker(
    n: int, settings: Settings, api_key: str, files: Path, go: list[Any], results: Any
) -> None:
    """Log, then link and move the alias. Messages on ``results``: ``("ready", n, phase)``
    before each phase (which starts when ``go[phase]`` is set), then ``("report", n, dict)``."""

    def start(phase: int) -> None:
        results.put(("ready", n, phase))
        if not go[phase].wait(START_TIMEOUT_S + RUN_TIMEOUT_S):
            raise TimeoutError(f"phase {phase} never started")

    report: dict[str, Any] = {
        "worker": n,
        "error": None,
        "log_indices": [],
        "links": [],
        "moves": [],
        "warnings": [],
    }
    collect = _Collect()
    logging.getLogger().addHandler(collect)
    logging.captureWarnings(True)  # Python warnings (e.g. SQLAlchemy's) count as well
    service = None
    try:
        service = Service(settings)
        actor = service.authenticate(api_key)
        files.mkdir(parents=True, exist_ok=True)
        digests = []
        for j in range(LINKS_PER_WORKER):
            path = files / f"v{j}.bin"
            path.write_bytes(f"worker {n} version {j} {random.random()}\n".encode() * (j + 1))
            digests.append(service.store_file(actor, path))

        start(0)  # phase 1: concurrent logging into one source artifact
        sources = []
        for blob in digests:
            view = service.log_version(
                actor,
                entity=TEAM,
                project=PROJECT,
                name=SOURCE,
                type="model",
                files=[FileEntry("model.bin", blob.digest, blob.size, blob.check)],
            )
            assert view.created, "distinct content must make a new version (R10)"
            sources.append(view.membership_id)
            report["log_indices"].append(view.index)

        start(1)  # phase 2: links and alias moves, all at once
        rng = random.Random(n)
        links: list[int] = []  # membership ids of this worker's links
        previous: int | None = None
        for j, source in enumerate(sources):
            linked = service.link(actor, source, TARGET)
            assert linked.collection.path == TARGET and linked.created
            links.append(linked.membership_id)
            report["links"].append(linked.index)
            if len(links) < 2:
                continue  # with one link, a second move could land where the alias already is
            quota = MOVES_PER_WORKER * j // (LINKS_PER_WORKER - 1)
            while len(report["moves"]) < quota:
                target = rng.choice([m for m in links if m != previous])
                view = service.add_aliases(actor, target, [ALIAS])
                if ALIAS not in view.aliases:
                    raise AssertionError(f"add_aliases returned v{view.index} without {ALIAS}")
                report["moves"].append(view.index)
                previous = target
    except BaseException as exc:  # reported, never lost: the parent fails the test
        report["error"] = "".join(traceback.format_exception(exc))
    finally:
        report["warnings"] = collect.messages
        if service is not None:
            service.close()
        results.put(("report", n, report))


# -- what the reader checks in each snapshot -----------------------------------------------------
def _collection_id(service: Service, owner: Actor) -> int | None:
    def fn(repo: Any) -> int | None:
        return repo.s.scalar(
            select(Collection.id)
            .join(Registry, Registry.id == Collection.registry_id)
            .where(
                Registry.org_id == owner.org_id,
                Registry.name_key == REGISTRY,
                Collection.name_key == COLLECTION,
            )
        )

    return service.db.read(fn)


def _snapshot(service: Service, coll_id: int) -> tuple[list[int], dict[str, list[int]], int]:
    """One statement, so one consistent snapshot on both databases: every membership's
    index with the aliases it holds, plus a direct count of ``champion`` rows."""
    direct = (
        select(func.count())
        .select_from(Alias)
        .where(Alias.collection_id == coll_id, Alias.name_key == ALIAS)
        .scalar_subquery()
    )

    def fn(repo: Any) -> list[Any]:
        return list(
            repo.s.execute(
                select(Membership.version_index, Alias.name_key, direct)
                .outerjoin(Alias, Alias.membership_id == Membership.id)
                .where(Membership.collection_id == coll_id)
            )
        )

    rows = service.db.read(fn)
    indices = sorted({index for index, _, _ in rows})
    holders: dict[str, list[int]] = {}
    for index, name, _ in rows:
        if name is not None:
            holders.setdefault(name, []).append(index)
    count = rows[0][2] if rows else 0
    return indices, holders, count


class Reader:
    """Reads the collection while the workers write; collects every violation."""

    def __init__(self, service: Service, owner: Actor) -> None:
        self.service, self.owner = service, owner
        self.coll_id: int | None = None
        self.seen_alias = False
        self.reads = 0  # checks made while the alias existed
        self.problems: list[str] = []

    def check(self) -> None:
        if self.coll_id is None:
            self.coll_id = _collection_id(self.service, self.owner)
            if self.coll_id is None:
                return
        try:
            view = self.service.resolve(self.owner, f"{TARGET}:{ALIAS}")
        except NotFound as exc:
            if self.seen_alias:
                self.problems.append(f"{ALIAS} resolved to nothing after it existed: {exc}")
        else:
            self.seen_alias = True
            if ALIAS not in view.aliases:
                self.problems.append(
                    f"resolve({ALIAS}) returned v{view.index} whose aliases are {view.aliases}"
                )
        indices, holders, direct = _snapshot(self.service, self.coll_id)
        champion, latest = holders.get(ALIAS, []), holders.get("latest", [])
        if self.seen_alias:
            self.reads += 1
            if len(champion) != 1 or direct != 1:
                self.problems.append(
                    f"{ALIAS} on {champion} ({direct} alias rows) with links {len(indices)}"
                )
        elif len(champion) > 1 or direct > 1:
            self.problems.append(f"{ALIAS} on {champion} ({direct} alias rows)")
        if indices and indices != list(range(len(indices))):
            self.problems.append(f"indices are not v0..vN: {indices}")
        if indices and latest != [indices[-1]]:
            self.problems.append(f"latest on {latest}, highest is v{indices[-1]}")


# -- the test --------------------------------------------------------------------------------------
def _crew(service: Service, owner: Actor) -> list[tuple[str, str]]:
    """Four users in team ``crew``, a member of the model registry; (name, api key) each."""
    service.create_team(owner, TEAM)
    users = []
    for n in range(WORKERS):
        user, key = service.create_user(owner, f"worker-{n}")
        assert key is not None
        service.add_team_member(owner, TEAM, user.name)
        users.append((user.name, key))
    service.set_registry_role(owner, REGISTRY, team=TEAM, role="member")
    return users


class Workers:
    """The worker processes, released phase by phase, with their messages."""

    def __init__(self, settings: Settings, keys: list[str], tmp_path: Path) -> None:
        ctx = mp.get_context("spawn")
        self.go = [ctx.Event(), ctx.Event()]
        self.results = ctx.Queue()
        self.ready: list[set[int]] = [set(), set()]
        self.reports: dict[int, dict[str, Any]] = {}
        self.procs = [
            ctx.Process(
                target=_worker,
                name=f"regalia-worker-{n}",
                daemon=True,
                args=(n, settings, key, tmp_path / f"files-{n}", self.go, self.results),
            )
            for n, key in enumerate(keys)
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def _drain(self, timeout: float) -> None:
        try:
            kind, n, payload = self.results.get(timeout=timeout)
            while True:
                if kind == "ready":
                    self.ready[payload].add(n)
                else:
                    self.reports[n] = payload
                kind, n, payload = self.results.get_nowait()
        except queue.Empty:
            pass

    def pump(self, timeout: float) -> None:
        """Take the messages that arrived (waiting up to ``timeout`` for the first);
        fail the test at once if a worker reported an error or died without a report."""
        self._drain(timeout)
        silent = [n for n, p in enumerate(self.procs) if not p.is_alive() and n not in self.reports]
        if silent:
            self._drain(2.0)  # its last message may still be in the pipe
        errors = {n: r["error"] for n, r in self.reports.items() if r["error"]}
        if errors:
            pytest.fail("\n".join(f"worker {n} failed:\n{e}" for n, e in errors.items()))
        silent = [n for n, p in enumerate(self.procs) if not p.is_alive() and n not in self.reports]
        if silent:
            codes = [self.procs[n].exitcode for n in silent]
            pytest.fail(f"workers {silent} died without a report (exit codes {codes})")

    def release(self, phase: int, deadline: float) -> None:
        """Start ``phase`` in every worker at once, when all are ready for it."""
        while len(self.ready[phase]) < len(self.procs):
            if time.monotonic() > deadline:
                pytest.fail(f"only workers {sorted(self.ready[phase])} got to phase {phase}")
            self.pump(0.5)
        self.go[phase].set()

    @property
    def finished(self) -> bool:
        return len(self.reports) == len(self.procs)

    def stop(self) -> list[str]:
        """Make sure no worker outlives the test; return the names of those still running."""
        for p in self.procs:
            p.join(5)
        stuck = [p.name for p in self.procs if p.is_alive()]
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(10)
        return stuck


def test_r2_r4_r5_r11_four_processes_link_and_move_one_alias(
    service: Service, owner: Actor, settings: Settings, tmp_path: Path
) -> None:
    users = _crew(service, owner)
    workers = Workers(settings, [key for _, key in users], tmp_path)
    reader = Reader(service, owner)
    started = time.monotonic()
    try:
        workers.start()
        workers.release(0, started + START_TIMEOUT_S)  # all up: logging starts
        deadline = time.monotonic() + RUN_TIMEOUT_S  # for both phases together
        workers.release(1, deadline)  # all logged: links and moves start
        while not workers.finished:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"workers {sorted(set(range(WORKERS)) - set(workers.reports))} "
                    f"did not finish within {RUN_TIMEOUT_S:.0f} s of starting"
                )
            reader.check()
            workers.pump(0.002)  # also leaves the two cores to the writers between reads
    finally:
        stuck = workers.stop()
    elapsed = time.monotonic() - started
    assert not stuck, f"workers still running after {elapsed:.0f} s: {stuck}"

    # Every worker finished, without an exception or a logged warning.
    reports = [workers.reports[n] for n in range(WORKERS)]
    assert not any(r["error"] for r in reports)
    warnings = {r["worker"]: r["warnings"] for r in reports if r["warnings"]}
    assert not warnings, warnings
    assert [p.exitcode for p in workers.procs] == [0] * WORKERS

    total_links = WORKERS * LINKS_PER_WORKER
    total_moves = WORKERS * MOVES_PER_WORKER
    by_worker = {r["worker"]: r for r in reports}

    # R2: the source artifact and the collection both number 0..N-1, no gap, no repeat.
    logged = sorted(i for r in reports for i in r["log_indices"])
    assert logged == list(range(total_links))
    linked = sorted(i for r in reports for i in r["links"])
    assert linked == list(range(total_links))
    for r in reports:
        assert r["links"] == sorted(r["links"]), "one worker's links are numbered in its order"
    assert reader.coll_id is not None
    indices, holders, direct = _snapshot(service, reader.coll_id)
    assert indices == list(range(total_links))

    # R4: latest on v199, in the source too; R5: the alias on exactly one version.
    last = total_links - 1
    assert service.resolve(owner, TARGET).index == last
    assert service.resolve(owner, f"{TARGET}:latest").index == last
    assert service.resolve(owner, f"{TEAM}/{PROJECT}/{SOURCE}").index == last
    assert holders["latest"] == [last]
    assert len(holders[ALIAS]) == 1 and direct == 1
    champion = service.resolve(owner, f"{TARGET}:{ALIAS}")
    assert champion.aliases.count(ALIAS) == 1
    assert champion.index == holders[ALIAS][0]

    # R11: every move is recorded, by whom made it, in an order that chains:
    # each move starts where the previous one (in commit order) left the alias.
    moves = service.history(owner, REGISTRY, COLLECTION, alias=ALIAS, limit=1000)
    assert moves.next_cursor is None
    rows = list(reversed(moves.items))  # oldest first
    assert sum(len(r["moves"]) for r in reports) == total_moves
    assert len(rows) == total_moves, f"{len(rows)} alias_add rows for {total_moves} moves"
    assert {row.action for row in rows} == {"alias_add"}
    assert "from_index" not in rows[0].details, "the first add creates the alias"
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.details.get("from_index") == before.version_index, (before, after)
    assert rows[-1].version_index == champion.index
    per_actor = Counter(row.actor for row in rows)
    assert per_actor == {f"worker-{n}": MOVES_PER_WORKER for n in range(WORKERS)}
    for n in range(WORKERS):
        mine = [row.version_index for row in rows if row.actor == f"worker-{n}"]
        assert mine == by_worker[n]["moves"], f"worker {n}'s moves recorded out of order"

    # R11 for links and latest: 200 links, and latest moved onto each new link in order.
    def count_links(repo: Any) -> int:
        return repo.s.scalar(
            select(func.count())
            .select_from(HistoryEvent)
            .where(HistoryEvent.collection_id == reader.coll_id, HistoryEvent.action == "link")
        )

    assert service.db.read(count_links) == total_links
    latest_rows = service.history(owner, REGISTRY, COLLECTION, alias="latest", limit=1000)
    assert [row.version_index for row in reversed(latest_rows.items)] == list(range(total_links))

    # What the reader saw while the writers ran (checked last: the final state above
    # must hold whatever the reader saw).
    assert reader.reads >= MIN_CONCURRENT_READS, f"only {reader.reads} reads while writing"
    assert not reader.problems, (
        f"{len(reader.problems)} of {reader.reads} concurrent reads saw a broken state "
        f"(first ones: {reader.problems[:5]})"
    )
