"""Issue 12, findings 3, 4 and 5: what a user sends as a filter or a pattern
cannot stall the server. Over real HTTP, on SQLite and PostgreSQL.

* Finding 3: ``$regex`` ran Python's backtracking ``re`` inside the server
  (SQLite REGEXP); ``(.*)(.*)(.*)(.*)(.*)(.*)Z`` from an org viewer froze every
  request. Patterns are RE2 now (linear time), and RE2 refuses backreferences.
* Finding 4: an automation's ``alias_regex`` such as ``(a+)+$`` ran in the write
  transaction of every alias change. It is matched with RE2 now; a stored
  pattern RE2 cannot compile matches nothing and breaks no change.
* Finding 5: no bound on clauses; a ``$or`` of 20,000 aliases ran for minutes.
  Filters have limits (``regalia.core.limits``) answered with a 400 naming them,
  and every read has a time budget the database enforces.
* Done-when: ``/healthz`` answers within 100 ms while the worst allowed filter runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from servers import ServerProcess, ThreadServer
from sqlalchemy import text, update

from regalia.config import Settings
from regalia.core.limits import (
    MAX_FILTER_CLAUSES,
    MAX_FILTER_DEPTH,
    MAX_FILTER_VALUES,
    MAX_REGEX_CLAUSES,
    QUERY_TIMEOUT_S,
)
from regalia.service import Actor, Service
from regalia.store.models import Automation

CATASTROPHIC = "(.*)(.*)(.*)(.*)(.*)(.*)Z"  # Python's re: ~1 s on 40 characters, x20 per 10 more
BACKREFERENCE = r"(x+)\1Z"
# Linear in RE2 and PostgreSQL, but slow on long text (about 0.3-0.6 s per
# 256 KiB of random a/b): the way to make a filter run long on a few rows.
HEAVY = "a[ab]{250}c"
# Backtracking on these inputs takes minutes; a bound this wide fails on that, not on a busy CI.
HANG_S = 10.0
HEAVY_TEXT_BYTES = 256 * 1024
REGISTRY = "Prod"
HEALTHZ_MAX_S = 0.100


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Automation targets on loopback, and no delivery worker (nothing listens there)."""
    return dataclasses.replace(settings, automation_allow_private=True, automation_worker=False)


@dataclasses.dataclass
class World:
    service: Service
    owner: Actor
    viewer_key: str  # an org viewer: sees the organization's registries, changes nothing
    member_key: str  # a member of the registry Prod


@pytest.fixture
def world(service: Service, owner: Actor) -> World:
    service.create_registry(owner, REGISTRY)  # visibility: organization
    _, viewer_key = service.create_user(owner, "org-viewer", org_role="viewer")
    _, member_key = service.create_user(owner, "prod-member", org_role="member")
    service.set_registry_role(owner, REGISTRY, user="prod-member", role="member")
    assert viewer_key is not None and member_key is not None
    return World(service, owner, viewer_key, member_key)


def link(world: World, make_version: Any, collection: str, **version: Any) -> int:
    """Log a one-file version and link it into Prod/collection; the link's id."""
    source = make_version(world.owner, name=collection[:100], **version)
    view = world.service.link(
        world.owner, source.membership_id, f"wandb-registry-{REGISTRY}/{collection}"
    )
    return view.membership_id


def seed_long_names(world: World, make_version: Any, count: int = 20) -> None:
    """Collections whose 60-character names the old engine needed hours to
    search with CATASTROPHIC (about 10 s for each one at 50 characters)."""
    for i in range(count):
        link(world, make_version, f"{'x' * 60}{i:03d}")


def seed_heavy(world: World, make_version: Any, count: int) -> None:
    """Versions with long descriptions of random a/b, which HEAVY scans slowly."""
    rng = random.Random(12)
    for i in range(count):
        description = "".join(rng.choices("ab", k=HEAVY_TEXT_BYTES))
        link(world, make_version, f"heavy-{i}", description=description, metadata={"k": i})


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


class HealthPinger:
    """GET /healthz every ~20 ms in a thread while the ``with`` block runs;
    ``latencies`` holds how long each answer took (bounded: at most 3,000 pings)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=5)
        self.latencies: list[float] = []
        self.started: list[float] = []  # when each ping was sent (perf_counter)
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and len(self.latencies) < 3000:
            start = time.perf_counter()
            try:
                status = self.http.get("/healthz").status_code
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
                status = 0
            self.started.append(start)
            self.latencies.append(time.perf_counter() - start)
            if status != 200:
                self.failures.append(f"status {status}")
            self._stop.wait(0.02)

    def __enter__(self) -> HealthPinger:
        self.http.get("/healthz")  # connection made before the measured part
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.http.close()

    @property
    def worst(self) -> float:
        return max(self.latencies)


def warm_up(http: httpx.Client) -> None:
    """One authenticated read first: what is measured is the filter, not the
    first request after start (its first connection and statements)."""
    assert http.get("/api/v1/registries").status_code == 200


def search_versions(http: httpx.Client, filter: dict[str, Any], **body: Any) -> httpx.Response:
    return http.post("/api/v1/search/versions", json={"filter": filter, **body})


def error(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


# -- finding 3: catastrophic patterns --------------------------------------------------------------


def test_finding3_catastrophic_regex_from_an_org_viewer_answers_at_once(
    world, make_version, settings
):
    seed_long_names(world, make_version)
    with (
        ThreadServer(settings, world.service) as server,
        client(server.url, world.viewer_key) as http,
    ):
        warm_up(http)
        with HealthPinger(server.url) as pings:
            start = time.perf_counter()
            versions = search_versions(http, {"name": {"$regex": CATASTROPHIC}})
            collections = http.post(
                "/api/v1/search/collections", json={"filter": {"name": {"$regex": CATASTROPHIC}}}
            )
            elapsed = time.perf_counter() - start
        assert versions.status_code == 200, versions.text
        assert versions.json()["items"] == []  # no name holds a Z
        assert collections.status_code == 200 and collections.json()["items"] == []
        assert elapsed < HANG_S
        assert not pings.failures and pings.worst < HEALTHZ_MAX_S, pings.latencies

        # The same pattern where it matches: every long name, found by RE2.
        found = search_versions(http, {"name": {"$regex": "(.*)(.*)(.*)(.*)(.*)(.*)0"}}, limit=100)
        assert found.status_code == 200
        assert len(found.json()["items"]) == 20


@pytest.mark.parametrize(
    "pattern",
    [BACKREFERENCE, "x(?=x)", "(?<!y)x", "x*+"],
    ids=["backref", "lookahead", "lookbehind", "possessive"],
)
def test_finding3_patterns_re2_refuses_get_a_clear_400(world, make_version, settings, pattern):
    seed_long_names(world, make_version, count=2)
    with (
        ThreadServer(settings, world.service) as server,
        client(server.url, world.viewer_key) as http,
    ):
        response = search_versions(http, {"name": {"$regex": pattern}})
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "invalid_filter"
    assert "'$regex' on field 'name'" in err["message"]
    assert "RE2 syntax is required" in err["message"]
    assert err["details"]["field"] == "name"


# -- finding 4: automation patterns ----------------------------------------------------------------


def automation(http: httpx.Client, name: str, **fields: Any) -> httpx.Response:
    body = {
        "name": name,
        "event": "ADD_ARTIFACT_ALIAS",
        "action": "webhook",
        "target": "http://127.0.0.1:9/hook",
        **fields,
    }
    return http.post(f"/api/v1/registries/{REGISTRY}/automations", json=body)


def deliveries(http: httpx.Client, automation_id: int) -> list[dict[str, Any]]:
    response = http.get(f"/api/v1/automations/{automation_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


def add_alias(http: httpx.Client, membership_id: int, alias: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = http.post(f"/api/v1/versions/{membership_id}/aliases", json={"add": [alias]})
    return response, time.perf_counter() - start


def test_finding4_nested_quantifier_alias_regex_is_matched_in_linear_time(
    world, make_version, settings
):
    mid = link(world, make_version, "zoo")
    with (
        ThreadServer(settings, world.service) as server,
        client(server.url, world.member_key) as http,
    ):
        created = automation(http, "all-as", filter_kind="alias_regex", filter_value="(a+)+$")
        assert created.status_code == 201, created.text  # linear in RE2, so allowed
        hook = created.json()["id"]

        # Python's re needed ~10 s for 28 a's and a '!'; this is 127.
        response, elapsed = add_alias(http, mid, "a" * 127 + "!")
        assert response.status_code == 200, response.text
        assert elapsed < HANG_S
        assert deliveries(http, hook) == []  # it does not end in a's

        response, _ = add_alias(http, mid, "aaaa")
        assert response.status_code == 200
        assert [d["event"] for d in deliveries(http, hook)] == ["ADD_ARTIFACT_ALIAS"]  # matched


@pytest.mark.parametrize("kind", ["alias_regex", "tag_regex"])
def test_finding4_automation_patterns_re2_refuses_get_a_clear_400(world, settings, kind):
    event = "ADD_ARTIFACT_TAG" if kind == "tag_regex" else "ADD_ARTIFACT_ALIAS"
    with (
        ThreadServer(settings, world.service) as server,
        client(server.url, world.member_key) as http,
    ):
        for pattern in (r"^(prod)\1", "^prod(?!-old)", "x" * 300):
            response = automation(http, "bad", event=event, filter_kind=kind, filter_value=pattern)
            assert response.status_code == 400, response.text
            err = error(response)
            assert err["code"] == "invalid_request"
            assert err["details"]["field"] == "filter_value"
            if len(pattern) > 256:
                assert "1 to 256 characters" in err["message"]
            else:
                assert "RE2 syntax is required" in err["message"] and kind in err["message"]
        assert http.get(f"/api/v1/registries/{REGISTRY}/automations").json() == []


def test_finding4_a_stored_pattern_re2_rejects_breaks_no_alias_change(
    world, make_version, settings, caplog
):
    mid = link(world, make_version, "zoo")
    with (
        ThreadServer(settings, world.service) as server,
        client(server.url, world.member_key) as http,
    ):
        old = automation(http, "old", filter_kind="alias_regex", filter_value="^prod").json()["id"]
        every = automation(http, "every").json()["id"]
        # As a row written before patterns were RE2 would be: a lookahead.
        with world.service.db.engine.begin() as conn:
            conn.execute(
                update(Automation).where(Automation.id == old).values(filter_value="^prod(?!-old)")
            )
        with caplog.at_level(logging.WARNING, logger="regalia.store.outbox"):
            response, elapsed = add_alias(http, mid, "production")
        assert response.status_code == 200, response.text
        assert elapsed < HANG_S
        assert "production" in response.json()["aliases"]
        assert deliveries(http, old) == []  # treated as matching nothing...
        assert len(deliveries(http, every)) == 1  # ...while the others still fire
        assert any(
            "is not RE2 syntax, so it matches nothing" in r.getMessage() for r in caplog.records
        )


# -- finding 5: limits -----------------------------------------------------------------------------


def test_finding5_or_of_20000_aliases_gets_a_400_naming_the_clause_limit(
    world, make_version, settings
):
    link(world, make_version, "zoo")
    huge = {"$or": [{"alias": f"alias-{i}"} for i in range(20_000)]}
    with (
        ThreadServer(settings, world.service) as server,
        client(server.url, world.viewer_key) as http,
    ):
        start = time.perf_counter()
        response = search_versions(http, huge)
        elapsed = time.perf_counter() - start
        assert response.status_code == 400, response.text
        err = error(response)
        assert err["code"] == "invalid_filter"
        assert f"more than {MAX_FILTER_CLAUSES} clauses" in err["message"]
        assert "a list of 20000 filters" in err["message"]
        assert err["details"] == {"limit": "filter_clauses", "maximum": MAX_FILTER_CLAUSES}
        assert elapsed < HANG_S
        assert http.get("/api/v1/registries").status_code == 200  # nothing else was held up


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"alias": "alias-0"}
    for _ in range(depth):
        node = {"$and": [node]}
    return node


# (what is at the limit, the same one past it, the limit's name in details)
LIMIT_CASES = [
    pytest.param(
        {"$or": [{"alias": f"alias-{i}"} for i in range(MAX_FILTER_CLAUSES - 1)]},
        {"$or": [{"alias": f"alias-{i}"} for i in range(MAX_FILTER_CLAUSES)]},
        "filter_clauses",
        id="clauses",
    ),
    pytest.param(
        _nested(MAX_FILTER_DEPTH), _nested(MAX_FILTER_DEPTH + 1), "filter_depth", id="depth"
    ),
    pytest.param(
        {"alias": {"$in": [f"alias-{i}" for i in range(MAX_FILTER_VALUES)]}},
        {"alias": {"$in": [f"alias-{i}" for i in range(MAX_FILTER_VALUES + 1)]}},
        "filter_values",
        id="in-values",
    ),
    pytest.param(
        {"$or": [{"alias": {"$regex": f"^alias-{i}$"}} for i in range(MAX_REGEX_CLAUSES)]},
        {"$or": [{"alias": {"$regex": f"^alias-{i}$"}} for i in range(MAX_REGEX_CLAUSES + 1)]},
        "filter_regexes",
        id="regexes",
    ),
    pytest.param(
        {"alias": {"$regex": "^alias-0$|" + "x" * 246}},  # 256 characters
        {"alias": {"$regex": "^alias-0$|" + "x" * 247}},
        "pattern_length",
        id="pattern-length",
    ),
    pytest.param(
        {"alias": {"$regex": "^alias-0$|" + "y" * 3 + "[a-z]{1,150}"}},
        {"alias": {"$regex": "^alias-0$|" + ".{200}"}},
        "pattern_program",
        id="pattern-program",
    ),
]


@pytest.mark.parametrize(("at_limit", "past_limit", "limit"), LIMIT_CASES)
def test_finding5_a_filter_at_each_limit_works_and_one_past_it_gets_a_400(
    world, make_version, settings, at_limit, past_limit, limit
):
    holder = link(world, make_version, "zoo")
    world.service.add_aliases(world.owner, holder, ["alias-0"])
    link(world, make_version, "other")
    with (
        ThreadServer(settings, world.service) as server,
        client(server.url, world.viewer_key) as http,
    ):
        response = search_versions(http, at_limit)
        assert response.status_code == 200, response.text
        assert [v["membership_id"] for v in response.json()["items"]] == [holder]

        response = search_versions(http, past_limit)
        assert response.status_code == 400, response.text
        err = error(response)
        assert err["code"] == "invalid_filter"
        assert err["details"]["limit"] == limit
        assert "limit" in err["message"]


# -- time budget ----------------------------------------------------------------------------------


def _active_statements(database_url: str) -> list[str]:
    """Statements other sessions are running in this PostgreSQL database now."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_filter_past_the_time_budget_is_stopped_with_a_clear_error(
    world, make_version, settings, db_kind, clock
):
    seed_heavy(world, make_version, count=6)  # about 2-4 s of matching without a budget
    budget = 0.3
    tight = dataclasses.replace(settings, query_timeout_s=budget)
    service = Service(tight, clock=clock)
    try:
        with ThreadServer(tight, service) as server, client(server.url, world.viewer_key) as http:
            start = time.perf_counter()
            response = search_versions(http, {"description": {"$regex": HEAVY}})
            elapsed = time.perf_counter() - start
            assert response.status_code == 400, response.text
            err = error(response)
            assert err["code"] == "query_too_expensive"
            assert err["message"].startswith(f"the filter took longer than {budget:g} s")
            assert "narrow it" in err["message"]
            assert "metadata database failed" not in err["message"]
            assert err["details"]["limit"] == "query_timeout"
            # SQLite stops between two matches; one match of HEAVY takes ~0.7 s.
            assert elapsed < budget + 2.5
            if db_kind == "postgresql":  # cancelled in the server, not left running
                assert not [q for q in _active_statements(settings.database_url) if "~" in q]

            # The database is still usable: reads and writes go on.
            quick = search_versions(http, {"description": {"$regex": "^[ab]"}, "name": "heavy-0"})
            assert quick.status_code == 200, quick.text
            [holder] = quick.json()["items"]
            with client(server.url, world.member_key) as member:
                response, _ = add_alias(member, holder["membership_id"], "after-timeout")
            assert response.status_code == 200, response.text
    finally:
        service.close()


def test_the_timeout_setting_reaches_the_database(settings, db_kind):
    """REGALIA_QUERY_TIMEOUT is the budget of reads: on PostgreSQL the read
    connections' statement_timeout, on SQLite the deadline of read transactions."""
    service = Service(dataclasses.replace(settings, query_timeout_s=1.25, write_timeout_s=30))
    try:
        if db_kind == "postgresql":
            read = service.db.read(
                lambda repo: repo.s.execute(text("SHOW statement_timeout")).scalar()
            )
            write = service.db.write(
                lambda repo: repo.s.execute(text("SHOW statement_timeout")).scalar()
            )
            assert (read, write) == ("1250ms", "30s")
        else:
            assert service.db.read_timeout_s == 1.25 and service.db.write_timeout_s == 30
    finally:
        service.close()


@pytest.mark.parametrize("db_kind", ["postgresql"], indirect=True)
def test_a_change_past_the_write_budget_is_stopped_and_writes_nothing(
    world, make_version, settings, clock
):
    """PostgreSQL's statement_timeout bounds writes too (here: one waiting for a
    row lock). SQLite's wait for its write lock is bounded by its busy timeout."""
    mid = link(world, make_version, "zoo")
    tight = dataclasses.replace(settings, write_timeout_s=0.5)
    service = Service(tight, clock=clock)
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with ThreadServer(tight, service) as server, client(server.url, world.member_key) as http:
            with psycopg.connect(url) as locker:  # holds the collection's row lock
                locker.execute("SELECT id FROM collections WHERE name = 'zoo' FOR UPDATE")
                response, elapsed = add_alias(http, mid, "blocked")
                locker.rollback()
            assert response.status_code == 503, response.text
            err = error(response)
            assert err["code"] == "storage_unavailable"
            assert err["message"].startswith("the change took longer than 0.5 s")
            assert "nothing of it was written" in err["message"]
            assert elapsed < 3.0  # not retried
            assert "blocked" not in http.get(f"/api/v1/versions/{mid}").json()["aliases"]
            response, _ = add_alias(http, mid, "unblocked")
            assert response.status_code == 200, response.text
    finally:
        service.close()


# -- /healthz while the worst allowed filter runs -------------------------------------------------


def worst_allowed_filter() -> dict[str, Any]:
    """A filter at every limit at once: 100 clauses, 1000 listed values, 10
    patterns of 250 repetitions on long descriptions (each a slow linear scan)."""
    patterns = [
        {"description": {"$regex": f"a[ab]{{{250 - i}}}c"}} for i in range(MAX_REGEX_CLAUSES)
    ]
    clauses = [
        {"$or": patterns},  # 1 + 10
        {"alias": {"$nin": [f"alias-{i}" for i in range(MAX_FILTER_VALUES)]}},  # 1
        {"tag": {"$ne": "archived"}},  # 1
    ]
    used = 1 + 11 + 1 + 1  # the $and itself, then the three above
    clauses += [{"metadata.k": {"$ne": -i}} for i in range(1, MAX_FILTER_CLAUSES - used + 1)]
    return {"$and": clauses}


def _timed_healthz(http: httpx.Client) -> float:
    start = time.perf_counter()
    assert http.get("/healthz").status_code == 200
    return time.perf_counter() - start


@pytest.fixture
def server_process(world: World, settings: Settings, tmp_path) -> Iterator[ServerProcess]:
    """``regalia server`` (its own process, default budget) on this test's store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env |= {
        "REGALIA_HOME": str(settings.home),
        "REGALIA_DATABASE_URL": settings.database_url,
        "REGALIA_ORG": settings.org_name,
        "REGALIA_AUTOMATION_WORKER": "0",
        "REGALIA_SILENT": "1",
    }
    with ServerProcess(env, log=tmp_path / "server.log") as server:
        yield server


def test_healthz_answers_within_100ms_while_the_worst_allowed_filter_runs(
    world, make_version, server_process
):
    seed_heavy(world, make_version, count=12)  # unbounded, the filter would run ~30 s
    url = server_process.url
    with httpx.Client(base_url=url, timeout=5) as http:  # the machine's own noise, for the message
        idle = [_timed_healthz(http) for _ in range(20)]
    with client(url, world.viewer_key) as http:
        warm_up(http)
        with HealthPinger(url) as pings:
            start = time.perf_counter()
            response = search_versions(http, worst_allowed_filter())
            elapsed = time.perf_counter() - start
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert error(response)["code"] == "query_too_expensive"
    # The budget, plus at most one slow match on SQLite (it stops between two).
    assert elapsed < QUERY_TIMEOUT_S + 3.0
    assert elapsed > 0.5, "the filter should take long enough to measure against"
    assert not pings.failures, pings.failures
    assert len(pings.latencies) >= 10
    slowest = sorted(zip(pings.latencies, pings.started, strict=True))[-3:]
    assert pings.worst < HEALTHZ_MAX_S, (
        "slowest /healthz answers (s, sent at s into the request): "
        f"{[(round(t, 3), round(at - start, 2)) for t, at in slowest]} during "
        f"{elapsed:.1f} s of filtering; idle: {max(idle):.3f} s"
    )
