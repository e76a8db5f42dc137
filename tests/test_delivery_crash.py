"""SPEC §5 "never lost": a `regalia server` killed with SIGKILL while 500 alias
changes are producing deliveries to a slow receiver. After a restart every
event arrives: the receiver, deduplicating by delivery id, sees 500 distinct
events, none missing and none doubled under two ids."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from servers import ServerProcess

from regalia.service import Service

CHANGES = 500


class SlowReceiver:
    """Takes 50 ms per request; keeps every delivery id and the alias it carried."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.aliases_of: dict[str, set[str]] = defaultdict(set)
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(0.05)
                with outer.lock:
                    outer.requests += 1
                    outer.aliases_of[self.headers["X-Regalia-Delivery"]].add(
                        json.loads(body)["alias"]
                    )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def distinct(self) -> int:
        with self.lock:
            return len(self.aliases_of)


def test_sigkill_during_500_alias_changes_loses_no_delivery(settings, make_version, tmp_path):
    svc = Service(dataclasses.replace(settings, automation_allow_private=True))
    receiver = SlowReceiver()
    try:
        owner = svc.ensure_org()
        key = svc.create_api_key(owner)
        links = []
        for i in range(2):
            v = make_version.__class__(svc, make_version.root)(owner, metadata={"i": i})
            links.append(svc.link(owner, v.membership_id, "wandb-registry-model/zoo").membership_id)
        auto = svc.create_automation(owner, registry="model", name="crash", action="webhook",
                                     event="ADD_ARTIFACT_ALIAS", target=receiver.url,
                                     filter_kind="alias_regex", filter_value=r"^c\d+$")  # fmt: skip
    finally:
        svc.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env |= {"REGALIA_HOME": str(settings.home), "REGALIA_DATABASE_URL": settings.database_url,
            "REGALIA_ORG": settings.org_name, "REGALIA_AUTOMATION_ALLOW_PRIVATE": "1",
            "REGALIA_AUTOMATION_TIMEOUT": "1",  # a dead worker's leases expire after 12 s
            "REGALIA_AUTOMATION_WEBHOOK_RATE": "40"}  # fmt: skip
    server = ServerProcess(env, log=tmp_path / "server-1.log").start()
    current = {"url": server.url}
    back = threading.Event()
    seen_at_kill: dict[str, int] = {}

    def killer() -> None:
        deadline = time.monotonic() + 60
        while receiver.distinct() < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.proc is not None
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        seen_at_kill["delivered"] = receiver.distinct()
        seen_at_kill["changes"] = done
        restarted = ServerProcess(env, log=tmp_path / "server-2.log").start()
        servers.append(restarted)
        current["url"] = restarted.url
        back.set()

    servers = [server]
    kill_thread = threading.Thread(target=killer, daemon=True)
    kill_thread.start()
    failed_requests = 0
    t0 = time.monotonic()
    done = 0  # changes acknowledged so far
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
            for i in range(CHANGES):
                while True:  # the same idempotency key until the change is acknowledged
                    try:
                        r = client.post(
                            f"{current['url']}/api/v1/versions/{links[i % 2]}/aliases",
                            json={"add": [f"c{i}"]},
                            headers={"Idempotency-Key": f"crash-change-{i}"},
                        )
                        assert r.status_code == 200, r.text
                        done = i + 1
                        break
                    except httpx.TransportError:
                        failed_requests += 1
                        assert back.wait(60), "the server did not come back"
        t_changes = time.monotonic()
        kill_thread.join(60)
        # Killed while changes were being made and deliveries were still to send.
        assert 0 < seen_at_kill["changes"] < CHANGES
        assert 0 < seen_at_kill["delivered"] < CHANGES
        deadline = time.monotonic() + 120
        while receiver.distinct() < CHANGES and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for s in servers:
            s.stop()
        receiver.server.shutdown()

    aliases = [a for found in receiver.aliases_of.values() for a in found]
    assert all(len(found) == 1 for found in receiver.aliases_of.values())  # one event per id
    assert sorted(aliases) == sorted(f"c{i}" for i in range(CHANGES))  # each change, once
    svc = Service(settings)
    try:
        ds = svc.deliveries(svc.ensure_org(), auto.id, limit=1000)
    finally:
        svc.close()
    assert len(ds) == CHANGES and {d.status for d in ds} == {"succeeded"}
    assert {d.id for d in ds} == set(receiver.aliases_of)
    print(f"\n[crash] killed after {seen_at_kill['changes']} changes, when "
          f"{seen_at_kill['delivered']} deliveries had arrived; "
          f"{failed_requests} change request(s) retried across the restart; "
          f"{receiver.requests} requests for {CHANGES} events "
          f"({receiver.requests - CHANGES} sent again after the crash); changes took "
          f"{t_changes - t0:.1f} s, deliveries {time.monotonic() - t0:.1f} s")  # fmt: skip
