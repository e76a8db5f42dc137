"""Scale-out (SPEC §5): several `regalia worker` processes on one store never
send the same delivery at the same time, and together send each one once."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from regalia.service import Service
from regalia.store.models import Delivery, DeliveryAttempt

EVENTS = 200


class OverlapReceiver:
    """Takes 20 ms per request and notes any delivery id in flight twice at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inflight: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.overlaps: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                delivery = self.headers["X-Regalia-Delivery"]
                with outer.lock:
                    outer.inflight[delivery] += 1
                    if outer.inflight[delivery] > 1:
                        outer.overlaps.append(delivery)
                time.sleep(0.02)
                with outer.lock:
                    outer.inflight[delivery] -= 1
                    outer.received[delivery] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_three_workers_share_the_work_and_never_overlap(settings, make_version, tmp_path):
    svc = Service(dataclasses.replace(settings, automation_allow_private=True))
    receiver = OverlapReceiver()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        owner = svc.ensure_org()
        v = make_version.__class__(svc, make_version.root)(owner)
        mid = svc.link(owner, v.membership_id, "wandb-registry-model/zoo").membership_id
        # Three targets (paces are per target) sharing one receiver.
        autos = [svc.create_automation(owner, registry="model", name=f"w{k}", action="webhook",
                                       event="ADD_ARTIFACT_ALIAS", target=f"{receiver.url}{k}",
                                       filter_kind="alias_regex", filter_value=r"^a\d+$").id
                 for k in range(3)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
        env |= {"REGALIA_HOME": str(settings.home), "REGALIA_DATABASE_URL": settings.database_url,
                "REGALIA_ORG": settings.org_name, "REGALIA_AUTOMATION_ALLOW_PRIVATE": "1",
                "REGALIA_AUTOMATION_WEBHOOK_RATE": "0"}  # fmt: skip
        for n in range(3):
            log = (tmp_path / f"worker-{n}.log").open("wb")
            workers.append(subprocess.Popen([sys.executable, "-m", "regalia", "worker"],
                                            env=env, stderr=log))  # fmt: skip
        time.sleep(3)  # all three are up and polling
        for i in range(EVENTS // 3):
            svc.add_aliases(owner, mid, [f"a{i}"])
        queued = [d.id for a in autos for d in svc.deliveries(owner, a, limit=1000)]
        deadline = time.monotonic() + 60
        while len(receiver.received) < len(queued) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything sent twice would arrive by now
        with svc.db.engine.connect() as conn:
            senders = conn.execute(
                select(DeliveryAttempt.worker)
                .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
                .where(Delivery.automation_id.in_(autos))
                .distinct()
            ).all()
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        receiver.server.shutdown()
        svc.close()
    assert all(w.returncode == 0 for w in workers)  # a clean stop on SIGTERM
    assert receiver.overlaps == []
    assert sorted(receiver.received) == sorted(queued)
    assert set(receiver.received.values()) == {1}  # no crash: each sent exactly once
    assert len(senders) >= 2  # the work was shared
