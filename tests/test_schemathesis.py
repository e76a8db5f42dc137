"""Schemathesis against a real ``regalia server`` on 127.0.0.1, on SQLite and
PostgreSQL: every operation of the OpenAPI document gets schemathesis'
coverage cases (boundary values, missing and wrong-typed inputs) and
generated requests (valid ones, and ones that break the schema), and every
answer must be no server error, a documented status, a documented content
type, match its schema and carry its documented headers, within a
per-request timeout (a hang fails). Bounded: a fixed number of examples per
operation (derandomized, so a run is repeatable: about 3,900 requests) and an
overall time budget.

Each operation starts from freshly seeded objects (a registry, a collection,
a linked version, a team, a user, an automation and its delivery, an upload
in progress), so part of its requests name real objects instead of ids and
names nobody has. The run acts as an org admin (it may do everything) and
then, with fewer examples, as an org viewer (the 403 answers). The users it
acts as have unguessable names, so no generated request revokes their keys.

A failure lists every failing case: operation, what was sent (a curl line),
the status, the failed checks, and the head of the server's traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup
from servers import ThreadServer

from regalia.service import Actor, Service
from regalia.service.views import FileEntry

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Examples per operation and mode: (mode, with the seeded objects, count).
ADMIN_PLAN = [
    (GenerationMode.POSITIVE, True, 12),
    (GenerationMode.POSITIVE, False, 8),
    (GenerationMode.NEGATIVE, True, 8),
    (GenerationMode.NEGATIVE, False, 6),
]
VIEWER_PLAN = [(GenerationMode.POSITIVE, True, 4)]
REQUEST_TIMEOUT = 10.0  # seconds; an answer later than this is a hang
TIME_BUDGET = 150.0  # seconds for the whole run on one database


@dataclasses.dataclass
class Problem:
    operation: str
    status: int | None
    checks: list[str]
    request: str
    traceback: str

    def __str__(self) -> str:
        lines = [f"{self.operation} -> {self.status}: {', '.join(self.checks)}", self.request]
        if self.traceback:
            lines.append("  server traceback (last lines):")
            lines += ["    " + line for line in self.traceback.strip().splitlines()[-6:]]
        return "\n".join(lines)


class ServerErrors(logging.Handler):
    """Collects the tracebacks the server logs while one request runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> str:
        found, self.records = self.records, []
        formatter = logging.Formatter()
        return "\n".join(
            formatter.formatException(r.exc_info) if r.exc_info else r.getMessage() for r in found
        )


@dataclasses.dataclass
class World:
    """Objects one operation's requests may name."""

    registry: str
    collection: str
    alias: str
    membership_id: int
    digest: str
    upload_digest: str
    team: str
    user: str
    automation_id: int
    delivery_id: str

    QUERY = ("path",)  # query parameters that name objects

    def parameters(self, path: str, names: list[str]) -> dict[str, dict[str, Any]]:
        """Values naming this world's objects, by location, for ``names``."""
        query = {"path": f"wandb-registry-{self.registry}/{self.collection}:{self.alias}"}
        values: dict[str, Any] = {
            "name": self.user if path.startswith("/api/v1/users/") else self.registry,
            "collection": self.collection,
            "alias": self.alias,
            "membership_id": self.membership_id,
            "digest": self.upload_digest if path.startswith("/api/v1/uploads/") else self.digest,
            "number": 0,
            "team": self.team,
            "automation_id": self.automation_id,
            "delivery_id": self.delivery_id,
        }
        return {
            "path": {name: values[name] for name in names if name in values},
            "query": {name: query[name] for name in names if name in query},
        }


class Seeder:
    def __init__(self, svc: Service, admin: Actor, root: Path, url: str, key: str) -> None:
        self.svc, self.admin, self.root = svc, admin, root
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=REQUEST_TIMEOUT
        )
        self.count = 0

    def world(self) -> World:
        self.count += 1
        n = f"{self.count}-{uuid.uuid4().hex[:6]}"
        svc, admin = self.svc, self.admin
        registry = f"reg-{n}"
        svc.create_registry(admin, registry)
        svc.protect_alias(admin, registry, "production")
        path = self.root / f"file-{n}"
        path.write_bytes(f"content {n}".encode())
        blob = svc.store_file(admin, path)
        version = svc.log_version(
            admin,
            entity=admin.name,
            project="proj",
            name=f"art-{n}",
            type="model",
            files=[FileEntry("model.bin", blob.digest, blob.size, blob.check)],
            tags=["seeded"],
            metadata={"accuracy": 0.5},
        )
        link = svc.link(
            admin, version.membership_id, f"wandb-registry-{registry}/coll-{n}", ["staging"]
        )
        team = svc.create_team(admin, f"team-{n}")
        user, _ = svc.create_user(admin, f"user-{n}", org_role="member")
        svc.add_team_member(admin, team.name, user.name)
        automation = svc.create_automation(
            admin,
            registry=registry,
            name=f"auto-{n}",
            event="ADD_ARTIFACT_ALIAS",
            action="webhook",
            target="http://127.0.0.1:9/hook",  # never sent: this server runs no delivery worker
        )
        delivery = svc.test_automation(admin, automation.id)
        return World(
            registry=registry,
            collection=f"coll-{n}",
            alias="staging",
            membership_id=link.membership_id,
            digest=blob.digest,
            upload_digest=self._upload(n),
            team=team.name,
            user=user.name,
            automation_id=automation.id,
            delivery_id=delivery.id,
        )

    def _upload(self, n: str) -> str:
        """An upload in progress (begun over HTTP: the upload area is the server's)."""
        content = f"upload {n}".encode()
        digest = hashlib.sha256(content).hexdigest()
        self.http.post("/api/v1/uploads", json={"digest": digest, "size": len(content)})
        return digest


class Run:
    """The schemathesis run: drives each operation, collects every problem."""

    def __init__(self, schema: Any, seeder: Seeder, errors: ServerErrors) -> None:
        self.schema = schema
        self.seeder = seeder
        self.errors = errors
        self.session = requests.Session()
        self.problems: list[Problem] = []
        self.seen: set[tuple[str, int | None, tuple[str, ...]]] = set()
        self.cases = 0
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.seconds: Counter[str] = Counter()
        self.operations = 0
        self.cut_short: list[str] = []
        self.deadline = time.monotonic() + TIME_BUDGET

    def all(
        self, key: str, plan: list[tuple[GenerationMode, bool, int]], *, fresh: bool, coverage: bool
    ) -> None:
        """Every operation with ``plan``; ``fresh``: new objects for each one
        (its requests may delete them), else one set for all; ``coverage``:
        first schemathesis' coverage cases (boundary values, missing and
        wrong-typed inputs; deterministic)."""
        world = None
        for result in self.schema.get_all_operations():
            operation = result.ok()
            self.operations += 1
            names = [p.name for p in operation.path_parameters]
            names += [p.name for p in operation.query if p.name in World.QUERY]
            started = time.monotonic()
            if coverage:
                self.coverage(operation, key)
            for mode, seeded, count in plan:
                fixed: dict[str, dict[str, Any]] = {}
                if seeded:
                    if not names:
                        continue  # nothing to name: the generated run covers it
                    if world is None or fresh:
                        world = self.seeder.world()
                    fixed = world.parameters(operation.path, names)
                self.operation(operation, key, mode, fixed, count)
            self.seconds[operation.label] += time.monotonic() - started

    def coverage(self, operation: Any, key: str) -> None:
        cases = self.schema.iter_coverage_cases(
            operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=self.schema.config.generation_for(operation=operation),
        )
        for case in cases:
            if time.monotonic() > self.deadline:
                self.cut_short.append(operation.label)
                return
            self.case(operation.label, case, key)

    def operation(
        self,
        operation: Any,
        key: str,
        mode: GenerationMode,
        fixed: dict[str, dict[str, Any]],
        count: int,
    ) -> None:
        label = operation.label
        strategy = operation.as_strategy(
            generation_mode=mode,
            path_parameters=fixed.get("path") or None,
            query=fixed.get("query") or None,
        )

        @settings(
            max_examples=count,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(case=strategy)
        def send(case: Any) -> None:
            if time.monotonic() > self.deadline:
                if label not in self.cut_short:
                    self.cut_short.append(label)
                return
            self.case(label, case, key)

        # Unsatisfiable: e.g. no invalid request exists for an operation without inputs.
        with contextlib.suppress(Unsatisfiable):
            send()

    def case(self, label: str, case: Any, key: str) -> None:
        self.cases += 1
        headers = {"Authorization": f"Bearer {key}"}
        self.errors.take()
        try:
            response = case.call(session=self.session, headers=headers, timeout=REQUEST_TIMEOUT)
        except requests.Timeout:
            self.problem(label, None, [f"hang: no answer in {REQUEST_TIMEOUT:.0f} s"], case)
            return
        except requests.ConnectionError as exc:
            self.problem(label, None, [f"connection failed: {exc}"], case)
            return
        self.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            titles = sorted({f.title for f in group.exceptions})
            self.problem(label, response.status_code, titles, case, response)

    def problem(
        self,
        label: str,
        status: int | None,
        checks: list[str],
        case: Any,
        response: requests.Response | None = None,
    ) -> None:
        key = (label, status, tuple(checks))
        traceback = self.errors.take()
        if key in self.seen:
            return  # the same failure of the same operation: shown once
        self.seen.add(key)
        request = "  " + case.as_curl_command(headers={"Authorization": "Bearer KEY"})
        if response is not None:
            request += f"\n  answer: {response.text[:300]!r}"
        self.problems.append(Problem(label, status, checks, request, traceback))


@pytest.fixture
def api(settings, service: Service, tmp_path: Path) -> Iterator[tuple[str, str, str, Seeder]]:
    """A server (no delivery worker: nothing leaves the machine), an org admin
    and an org viewer with unguessable names, and a seeder of objects."""
    owner = service.ensure_org()
    tag = uuid.uuid4().hex[:10]
    _, admin_key = service.create_user(owner, f"st-admin-{tag}", org_role="admin")
    _, viewer_key = service.create_user(owner, f"st-viewer-{tag}", org_role="viewer")
    assert admin_key and viewer_key
    admin = service.authenticate(admin_key)
    root = tmp_path / "seed"
    root.mkdir()
    with ThreadServer(settings, service) as server:
        seeder = Seeder(service, admin, root, server.url, admin_key)
        yield server.url, admin_key, viewer_key, seeder
        seeder.http.close()


@pytest.fixture(name="settings")
def private_targets_allowed(settings):
    # Automations may name 127.0.0.1 (no DNS look-ups of generated host names);
    # the server runs no delivery worker, so nothing is ever sent.
    return dataclasses.replace(settings, automation_allow_private=True)


def test_schemathesis_finds_no_server_error_and_no_conformance_failure(api, db_kind):
    url, admin_key, viewer_key, seeder = api
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", timeout=REQUEST_TIMEOUT)
    schema.config.output.sanitization.update(enabled=False)  # test keys; show run_key etc.
    errors = ServerErrors()
    server_log = logging.getLogger("regalia.server")
    server_log.addHandler(errors)
    started = time.monotonic()
    run = Run(schema, seeder, errors)
    try:
        run.all(admin_key, ADMIN_PLAN, fresh=True, coverage=True)
        run.all(viewer_key, VIEWER_PLAN, fresh=False, coverage=False)
    finally:
        server_log.removeHandler(errors)
    elapsed = time.monotonic() - started
    summary = (
        f"schemathesis {schemathesis.__version__} on {db_kind}: {run.operations} operation runs, "
        f"{run.cases} cases in {elapsed:.1f} s, {len(run.problems)} distinct failures"
    )
    print(summary)
    by_operation: dict[str, list[str]] = {}
    for (label, status), n in sorted(run.statuses.items()):
        by_operation.setdefault(label, []).append(f"{status}x{n}")
    for label, counts in by_operation.items():
        print(f"  {label}: {' '.join(counts)} ({run.seconds[label]:.1f} s)")
    if run.cut_short:
        warnings.warn(
            f"{summary}; the {TIME_BUDGET:.0f} s budget ran out before: "
            + ", ".join(run.cut_short),
            stacklevel=1,
        )
    assert not run.problems, summary + "\n\n" + "\n\n".join(str(p) for p in run.problems)
