"""Helpers of the automation tests: HTTP receivers on 127.0.0.1 that record
what Regalia sends and answer from a script, and a worker run until done."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from regalia.service import Service
from regalia.service.delivery import DeliveryPolicy
from regalia.worker import DeliveryWorker

FAST = DeliveryPolicy(max_attempts=4, retry_base_s=0.05, retry_cap_s=0.2, timeout_s=2,
                      lease_s=10, slack_rate=100, webhook_rate=100)  # fmt: skip


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests and answers from a script
    (a list of (status, headers) used in turn; the last one repeats)."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = script
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((time.monotonic(), dict(self.headers), body))
                status, headers = outer.script[min(len(outer.requests), len(outer.script)) - 1]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def drain(
    svc: Service, done: Callable[[], bool], timeout: float = 20, policy: DeliveryPolicy = FAST
) -> None:
    """Run a worker until ``done()`` or ``timeout`` seconds."""
    worker = DeliveryWorker(svc, policy)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + timeout
        try:
            while not await asyncio.to_thread(done):
                assert not task.done(), task.exception()
                assert time.monotonic() < deadline, "deliveries did not settle in time"
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task

    asyncio.run(go())
