"""Issue 12, finding 11 (the web and SSRF parts), over real HTTP on SQLite and
PostgreSQL: UI sessions that end at logout, Secure cookies behind an HTTPS
proxy, security headers on pages, and automation targets that cannot reach
loopback or private addresses (IPv6 forms that embed IPv4, numeric hosts, DNS
rebinding)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from automation_helpers import FAST, Receiver
from servers import ServerProcess, ThreadServer

from regalia.errors import Unauthenticated
from regalia.service import Service
from regalia.worker import DeliveryWorker, PinnedTransport

TEMPLATES = Path(__file__).parents[1] / "src/regalia/server/ui/templates"


# -- helpers -------------------------------------------------------------------------
def log_in(client: httpx.Client, key: str, **headers: str) -> httpx.Response:
    """As a browser does: the form first (its token), then the post."""
    form = client.get("/login", headers=headers).text
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form).group(1)
    return client.post("/login", data={"api_key": key, "next": "/", "nonce": nonce},
                       headers=headers)  # fmt: skip


def log_in_over_https(client: httpx.Client, key: str, **proto: str) -> httpx.Response:
    """As a browser on https://...: it sends Secure cookies back (httpx, talking
    plain http to the test's server, would not)."""
    form = client.get("/login", headers=proto)
    assert "secure" in cookie_flags(form, "regalia_login")
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form.text).group(1)
    return client.post("/login", data={"api_key": key, "next": "/", "nonce": nonce},
                       headers=proto | {"Cookie": f"regalia_login={nonce}"})  # fmt: skip


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def cookie_flags(response: httpx.Response, name: str) -> set[str]:
    """The attributes (lower case) of the Set-Cookie for ``name``."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def server_env(settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    return env | {"REGALIA_HOME": str(settings.home), "REGALIA_DATABASE_URL": settings.database_url,
                  "REGALIA_ORG": settings.org_name} | extra  # fmt: skip


@pytest.fixture
def site(settings, service, owner) -> Iterator[ThreadServer]:
    with ThreadServer(settings, service) as server:
        yield server


# -- sessions end at logout ------------------------------------------------------------
def test_finding11_a_replayed_cookie_after_logout_gets_the_login_page(
    site, settings, service, owner, clock
):
    key = service.create_api_key(owner)
    with httpx.Client(base_url=site.url) as b:
        r = log_in(b, key)
        assert r.status_code == 303
        assert {"httponly", "max-age", "path", "samesite"} <= cookie_flags(r, "regalia_session")
        assert "max-age=43200" in r.headers["set-cookie"].lower()  # 12 hours
        token = b.cookies["regalia_session"]
        assert key not in token and len(token) < 100  # a session id, not the key sealed
        home = b.get("/")
        assert home.status_code == 200
        assert b.post("/logout", data={"csrf": csrf_of(home.text)}).status_code == 303
    # An old copy of the cookie (and the form token made from it) is worth nothing now.
    with httpx.Client(base_url=site.url, cookies={"regalia_session": token}) as replay:
        r = replay.get("/registries/model")
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
        r = replay.post("/registries", data={"csrf": csrf_of(home.text), "name": "Sneaky"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert "Sneaky" not in [reg.name for reg in service.list_registries(owner)]
    with pytest.raises(Unauthenticated):
        service.web_session_user(token)


def test_finding11_logout_on_one_server_ends_the_session_on_another(
    site, settings, service, owner, clock
):
    """Two server processes of one deployment read the same sessions table."""
    other = Service(settings, clock=clock)
    try:
        with ThreadServer(settings, other) as second, httpx.Client(base_url=site.url) as b:
            log_in(b, service.create_api_key(owner))
            token = b.cookies["regalia_session"]
            there = httpx.Client(base_url=second.url, cookies={"regalia_session": token})
            with there:
                page = there.get("/")
                assert page.status_code == 200  # the session works on the other server
                there.post("/logout", data={"csrf": csrf_of(page.text)})
            assert b.get("/").status_code == 303  # ... and logging out there ended it here
    finally:
        other.close()


def test_finding11_a_revoked_key_ends_its_sessions_at_once(site, service, owner):
    _, key = service.create_user(owner, "rita")
    with httpx.Client(base_url=site.url) as b:
        log_in(b, key)
        assert b.get("/").status_code == 200
        service.revoke_api_keys(owner, "rita")  # no cache to wait for: checked on each page
        assert b.get("/").status_code == 303
    assert service.sweep_web_sessions() == 1  # and its row goes at the next sweep


def test_finding11_an_expired_session_is_refused_and_swept(site, service, owner, clock):
    key = service.create_api_key(owner)
    with httpx.Client(base_url=site.url) as b:
        log_in(b, key)
        clock.advance(hours=11, minutes=59)
        assert b.get("/").status_code == 200  # fixed lifetime: using it does not extend it
        clock.advance(minutes=2)
        r = b.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
    with httpx.Client(base_url=site.url) as fresh:
        log_in(fresh, key)  # a login sweeps the expired session
        assert fresh.get("/").status_code == 200
    assert service.sweep_web_sessions() == 0


# -- Secure cookies --------------------------------------------------------------------
def test_finding11_cookies_are_secure_behind_an_https_proxy(settings, tmp_path):
    """`regalia server --proxy-headers`: X-Forwarded-Proto from a trusted proxy
    address makes the cookies Secure; plain http and untrusted proxies do not."""
    trusted = ["--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"]
    with ServerProcess(server_env(settings), log=tmp_path / "a.log", args=trusted) as server:
        key = server.api_key
        with httpx.Client(base_url=server.url) as b:
            r = log_in_over_https(b, key, **{"X-Forwarded-Proto": "https"})
            assert r.status_code == 303
            assert {"secure", "httponly", "samesite"} <= cookie_flags(r, "regalia_session")
        with httpx.Client(base_url=server.url) as plain:
            r = log_in(plain, key)
            assert r.status_code == 303 and "secure" not in cookie_flags(r, "regalia_session")
    untrusted = ["--proxy-headers", "--forwarded-allow-ips", "192.0.2.7"]
    with (
        ServerProcess(server_env(settings), log=tmp_path / "b.log", args=untrusted) as server,
        httpx.Client(base_url=server.url) as b,
    ):
        r = log_in(b, key, **{"X-Forwarded-Proto": "https"})  # anyone can send the header
        assert r.status_code == 303 and "secure" not in cookie_flags(r, "regalia_session")


def test_finding11_cookies_are_secure_when_the_public_url_is_https(settings, service, owner):
    key = service.create_api_key(owner)
    public = dataclasses.replace(settings, public_url="https://regalia.example.org")
    with ThreadServer(public, service) as server, httpx.Client(base_url=server.url) as b:
        # (no X-Forwarded-Proto: the test server trusts it from 127.0.0.1, as uvicorn does)
        r = log_in_over_https(b, key)
        assert "secure" in cookie_flags(r, "regalia_session")


# -- security headers ------------------------------------------------------------------
def test_finding11_pages_forbid_framing_and_inline_script(site, service, owner):
    key = service.create_api_key(owner)
    with httpx.Client(base_url=site.url) as b:
        pages = {"/login": b.get("/login")}
        log_in(b, key)
        for path in ("/", "/registries/model", "/registries/model/settings", "/search?q=m",
                     "/registries/model/automations", "/docs"):  # fmt: skip
            pages[path] = b.get(path)
        api = b.get("/api/v1/registries", headers={"Authorization": f"Bearer {key}"})
        health = b.get("/healthz")
    for path, r in pages.items():
        assert r.status_code == 200, path
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), f"inline script on {path}"
        assert not re.search(r"\s(style|on[a-z]+)=", r.text), f"inline style or handler on {path}"
    for r in (api, health):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"].startswith("default-src 'none'")


def test_no_template_has_inline_script_style_or_handlers():
    """What the page policy forbids is in no template (the browser test checks
    Chromium reports no violation on the pages it visits)."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|javascript:", text), template.name


# -- SSRF: targets that embed loopback ------------------------------------------------
EMBEDDED_LOOPBACK = [
    "http://[64:ff9b::7f00:1]/hook",  # NAT64
    "http://[2002:7f00:1::]/hook",  # 6to4
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped
    "http://[::127.0.0.1]/hook",  # IPv4-compatible
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook",  # Teredo, client 127.0.0.1 (XOR-ed)
    "http://2130706433/hook",  # decimal
    "http://0x7f000001/hook",  # hex
    "http://0177.0.0.1/hook",  # octal
    "http://127.1/hook",  # short form
]
OTHER_PRIVATE = ["http://0.0.0.0/x", "http://100.64.0.1/x", "http://169.254.169.254/latest",
                 "http://[fd00::1]/x", "http://[fe80::1]/x", "http://[fec0::1]/x",
                 "http://[ff02::1]/x", "http://[::]/x", "http://[64:ff9b::a00:1]/x",
                 "http://[64:ff9b:1::808:808]/x", "http://224.0.0.1/x"]  # fmt: skip


def test_finding11_automation_targets_that_embed_loopback_are_refused(site, service, owner):
    key = service.create_api_key(owner)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=site.url + "/api/v1", headers=headers) as api:
        for i, url in enumerate(EMBEDDED_LOOPBACK + OTHER_PRIVATE):
            body = {"name": f"hook{i}", "event": "LINK_ARTIFACT", "action": "webhook",
                    "target": url}  # fmt: skip
            r = api.post("/registries/model/automations", json=body)
            assert r.status_code == 400, url
            error = r.json()["error"]
            assert error["code"] == "invalid_request"
            assert "REGALIA_AUTOMATION_ALLOW_PRIVATE" in error["message"], url
            if url in EMBEDDED_LOOPBACK:
                assert "127.0.0.1" in error["message"], (url, error["message"])
        assert api.get("/registries/model/automations").json() == []  # nothing written


class RunningWorker:
    """A delivery worker on its own event loop in a thread, until the block ends."""

    def __init__(self, worker: DeliveryWorker) -> None:
        self.worker = worker
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.ready.set()
        await self.worker.run(self.stop)

    def __enter__(self) -> RunningWorker:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(20)


def settle(svc: Service, owner, automation_ids: list[int], timeout: float = 20) -> list:
    """Wait (bounded) until the automations' deliveries are no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        found = [d for a in automation_ids for d in svc.deliveries(owner, a)]
        if found and all(d.status != "pending" for d in found):
            return found
        assert time.monotonic() < deadline, "the deliveries did not settle in time"
        time.sleep(0.02)


@pytest.fixture
def loose(settings) -> Iterator[Service]:
    """A service that allows loopback targets (to store the ones a strict worker
    must refuse), on the real clock (retries wait real time)."""
    svc = Service(dataclasses.replace(settings, automation_allow_private=True))
    yield svc
    svc.close()


@pytest.fixture
def strict(settings) -> Iterator[Service]:
    svc = Service(dataclasses.replace(settings, automation_allow_private=False))
    yield svc
    svc.close()


def hooks(svc: Service, urls: list[str]) -> list[int]:
    """One webhook automation per URL, each with a test delivery queued."""
    owner = svc.ensure_org()
    ids = []
    for url in urls:
        auto = svc.create_automation(
            owner,
            registry="model",
            name=f"h{uuid.uuid4().hex[:8]}",
            event="LINK_ARTIFACT",
            action="webhook",
            target=url,
        )
        svc.test_automation(owner, auto.id)
        ids.append(auto.id)
    return ids


def test_finding11_the_worker_refuses_embedded_loopback_before_sending(loose, strict):
    """Targets stored while loopback was allowed are refused by a worker where it
    is not: a real receiver on 127.0.0.1 gets nothing; where it is allowed, the
    same forms do reach it (so the refusal is what kept them away)."""
    with Receiver([(200, {})]) as rx:
        port = rx.server.server_address[1]
        forms = ["[::ffff:127.0.0.1]", "[::127.0.0.1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]",
                 "2130706433", "0x7f000001", "0177.0.0.1", "127.1"]  # fmt: skip
        ids = hooks(loose, [f"http://{f}:{port}/hook" for f in forms])
        owner = strict.ensure_org()
        with RunningWorker(DeliveryWorker(strict, FAST)):
            done = settle(strict, owner, ids)
        assert rx.requests == []
        for d in done:
            assert (d.status, d.attempts) == ("failed", 1), d  # final at once, not retried
            assert "127.0.0.1" in d.error and "ALLOW_PRIVATE" in d.error, d.error
        reachable = hooks(loose, [f"http://[::ffff:127.0.0.1]:{port}/a",
                                  f"http://2130706433:{port}/b"])  # fmt: skip
        with RunningWorker(DeliveryWorker(loose, FAST)):
            sent = settle(loose, owner, reachable)
    assert [d.status for d in sent] == ["succeeded", "succeeded"]
    assert sorted(h["Host"] for _t, h, _b in rx.requests) == sorted(
        [f"[::ffff:7f00:1]:{port}", f"127.0.0.1:{port}"]
    )


class Guard(httpx.AsyncBaseTransport):
    """Sends requests to loopback addresses for real (through the worker's own
    transport) and refuses any other address without a packet leaving this
    machine; records where each request was sent."""

    def __init__(self) -> None:
        self.inner = PinnedTransport(limits=httpx.Limits(max_connections=4))
        self.sent: list[tuple[str, str]] = []  # (address connected to, Host header)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.url.host, request.headers["host"]))
        if not ipaddress.ip_address(request.url.host).is_loopback:
            raise httpx.ConnectError("the test lets nothing leave this machine", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_finding11_dns_rebinding_cannot_make_the_worker_connect_to_loopback(loose, strict):
    """The name is resolved once per try and the connection goes to the address
    that was checked: a resolver that answers a public address first and
    loopback afterwards never gets the worker to 127.0.0.1."""
    with Receiver([(200, {})]) as rx:
        port = rx.server.server_address[1]
        asked: list[str] = []

        def rebinding(host: str, _port: int) -> list[str]:
            asked.append(host)
            return ["93.184.216.34"] if len(asked) == 1 else ["127.0.0.1"]

        [auto] = hooks(loose, [f"http://hooks.rebind.test:{port}/hook"])
        owner = strict.ensure_org()
        guard = Guard()
        worker = DeliveryWorker(strict, FAST, resolve=rebinding, transport=guard)
        with RunningWorker(worker):
            [d] = settle(strict, owner, [auto])
        assert rx.requests == []  # loopback was never reached
        assert asked == ["hooks.rebind.test"]  # one lookup, used for all 4 tries
        assert d.status == "failed" and d.attempts == FAST.max_attempts
        assert set(guard.sent) == {("93.184.216.34", f"hooks.rebind.test:{port}")}
        # A fresh worker looks the name up again, gets loopback, and refuses it.
        loose.redeliver(owner, d.id)
        with RunningWorker(DeliveryWorker(strict, FAST, resolve=rebinding, transport=Guard())):
            again = settle(strict, owner, [auto])
        assert [x.status for x in again] == ["failed", "failed"] and rx.requests == []
        assert "loopback" in again[0].error
        # Where loopback is allowed, the worker connects to the resolved address by IP,
        # with the URL's Host header.
        guard = Guard()
        loose.redeliver(owner, d.id)
        worker = DeliveryWorker(loose, FAST, resolve=lambda h, p: ["127.0.0.1"], transport=guard)
        with RunningWorker(worker):
            settle(loose, owner, [auto])
    assert guard.sent == [("127.0.0.1", f"hooks.rebind.test:{port}")]
    assert [h["Host"] for _t, h, _b in rx.requests] == [f"hooks.rebind.test:{port}"]


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


def test_finding11_https_to_a_checked_address_still_verifies_the_name(loose, tmp_path):
    """Connecting by IP keeps TLS honest: the name goes in SNI and the certificate
    is verified against it; another name on the same address (and the same
    kept-alive connection pool) is not accepted with that certificate."""
    cert, key = make_cert(tmp_path, "hooks.tls.test")
    names: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda _sock, name, _ctx: names.append(name)
    with Receiver([(200, {})]) as rx:
        rx.server.RequestHandlerClass.protocol_version = "HTTP/1.1"  # keep connections alive
        rx.server.socket = server_ctx.wrap_socket(rx.server.socket, server_side=True)
        port = rx.server.server_address[1]
        owner = loose.ensure_org()
        worker = DeliveryWorker(loose, FAST, resolve=lambda h, p: ["127.0.0.1"],
                                verify=ssl.create_default_context(cafile=str(cert)))  # fmt: skip
        with RunningWorker(worker):
            [good] = hooks(loose, [f"https://hooks.tls.test:{port}/hook"])
            [ok] = settle(loose, owner, [good])
            [bad] = hooks(loose, [f"https://other.tls.test:{port}/hook"])
            [refused] = settle(loose, owner, [bad])
    assert ok.status == "succeeded"
    assert [h["Host"] for _t, h, _b in rx.requests] == [f"hooks.tls.test:{port}"]
    assert names[0] == "hooks.tls.test" and "other.tls.test" in names
    assert refused.status == "failed" and "certificate" in refused.error.lower(), refused.error


def test_finding11_numeric_and_embedded_forms_are_read_as_the_address_they_mean():
    """The pure rules (core/targets.py) behind the tests above."""
    from regalia.core.targets import check_target, parse_target, refusal

    public = ["http://8.8.8.8/", "http://[2606:4700::1111]/", "http://[64:ff9b::808:808]/",
              "http://[::ffff:8.8.8.8]/", "http://[2002:808:808::1]/",
              "http://134744072/"]  # fmt: skip
    for url in public:
        check_target(url, allow_private=False)  # public, in any of its forms
    assert parse_target("http://0x7f.1:81/a?b").url_for(ipaddress.ip_address("127.0.0.1")) == (
        "http://127.0.0.1:81/a?b"
    )
    # RFC 4380's example: its client 192.0.2.45 is stored XOR-ed; a public client is
    # refused too (Teredo is no place for a webhook).
    teredo = ipaddress.ip_address("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    assert refusal(teredo) == "it embeds the documentation IPv4 address 192.0.2.45"
    assert refusal(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:f7f7:f7f7")) == "Teredo"
    for url in ["http://1.2.3.256/", "http://example.1/", "http://08.1.1.1/"]:
        with pytest.raises(Exception, match="not a valid IPv4 address"):
            parse_target(url)
    name: Callable[[str, int], list[str]] = lambda h, p: ["203.0.113.9", "8.8.8.8"]  # noqa: E731
    with pytest.raises(Exception, match=r"'hooks.example' \(203.0.113.9\).*documentation"):
        check_target("https://hooks.example/x", allow_private=False, resolve=name)
