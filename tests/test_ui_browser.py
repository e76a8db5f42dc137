"""The seed document's UI steps in a real browser (Debian's Chromium, headless,
driven by Playwright), at 1280 px and on a 390 px wide phone screen.

Screenshots of every page go to ``$REGALIA_SCREENSHOTS`` or, by default,
``<pytest's basetemp>/screenshots``; the session prints where.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ThreadServer

CHROMIUM = "/usr/bin/chromium"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/test installs it)"
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One browser for this module; closed with it, since Playwright's sync API
    holds an event loop in this thread while it runs (asyncio.run would fail)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def shots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go; the end of the run prints it (conftest.py)."""
    given = os.environ.get("REGALIA_SCREENSHOTS")
    folder = Path(given) if given else tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    request.config.regalia_screenshots = folder  # type: ignore[attr-defined]
    return folder


def csp_violations(page) -> list[str]:
    """Every Content Security Policy violation the page reports from now on
    (Chromium's console messages, and the DOM's securitypolicyviolation events)."""
    found: list[str] = []
    page.on(
        "console",
        lambda m: found.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))"
    )
    return found


@pytest.fixture
def db_kind() -> str:
    return "sqlite"  # the pages are the same on both databases (the HTTP tests cover both)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_seed_ui_steps_in_a_browser(chromium, shots, width, settings, service, owner,
                                        make_version):  # fmt: skip
    v = make_version(owner, "weights", metadata={"acc": 0.91})
    service.link(owner, v.membership_id, "wandb-registry-model/zoo", aliases=["staging"])
    admin_key = service.create_api_key(owner)
    _, member_key = service.create_user(owner, "mia")
    service.set_registry_role(owner, "model", user="mia", role="member")
    size = WIDTHS[width]
    with ThreadServer(settings, service) as server:
        context = chromium.new_context(viewport={"width": size[0], "height": size[1]})
        page = context.new_page()
        violations = csp_violations(page)

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
            # The page fits the screen's width (wide tables scroll inside their box).
            assert page.evaluate("document.documentElement.scrollWidth") <= size[0], name

        def log_in(key: str) -> None:
            page.goto(server.url + "/login")
            shot("login")
            page.fill("#api_key", key)
            page.click("button:has-text('Log in')")
            page.wait_for_url(server.url + "/")

        log_in(admin_key)
        shot("home")
        # A protected alias, created in the registry settings (the gear, top right).
        page.click("text=model")
        page.wait_for_url("**/registries/model")
        shot("registry")
        page.click("a[aria-label='Registry settings']")
        page.fill("#new-protected", "production")
        page.click("button[aria-label='Add protected alias']")
        chip = page.locator("#protected-aliases .chip.protected", has_text="production")
        chip.wait_for()
        assert chip.locator("svg.lock").count() == 1
        assert _grey(chip.evaluate("e => getComputedStyle(e).backgroundColor"))
        shot("settings")
        # View details -> View -> + a custom alias: an orange chip.
        page.goto(server.url + "/registries/model")
        page.click("text=View details")
        page.wait_for_url("**/collections/zoo")
        shot("collection")
        page.click("a[aria-label='View v0']")
        page.wait_for_url("**/collections/zoo/v0")
        page.fill("#new-alias", "best_model")
        page.click("button[aria-label='Add aliases']")
        custom = page.locator("#aliases .chip.alias", has_text="best_model")
        custom.wait_for()
        assert _orange(custom.evaluate("e => getComputedStyle(e).backgroundColor"))
        # The protected alias, added by the admin: a grey chip with a lock.
        page.fill("#new-alias", "production")
        page.click("button[aria-label='Add aliases']")
        locked = page.locator("#aliases .chip.protected", has_text="production")
        locked.wait_for()
        assert locked.locator("svg.lock").count() == 1
        shot("version-admin")
        # Find the version by its alias in the search box at the top of the page.
        page.fill("#q", "best_m")
        page.press("#q", "Enter")
        page.wait_for_url("**/search?q=best_m")
        result = page.locator("#version-results a", has_text="wandb-registry-model/zoo:v0")
        assert result.count() == 1
        shot("search")
        result.click()
        page.wait_for_url("**/collections/zoo/v0")
        page.click("form[action='/logout'] button")
        # A member cannot remove the protected alias (no ×), but may remove the other.
        log_in(member_key)
        page.goto(server.url + "/registries/model/collections/zoo/v0")
        assert page.locator("button[aria-label='Remove alias production']").count() == 0
        assert page.locator("button[aria-label='Remove alias best_model']").count() == 1
        shot("version-member")
        assert violations == []  # every page met its Content Security Policy
        context.close()


def _rgb(css: str) -> tuple[int, ...]:
    return tuple(int(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def _grey(css: str) -> bool:
    r, g, b = _rgb(css)
    return max(r, g, b) - min(r, g, b) < 16


def _orange(css: str) -> bool:
    r, g, b = _rgb(css)
    return r > g > b and r - b > 15


@pytest.mark.parametrize("width", list(WIDTHS))
def test_automation_pages_in_a_browser(chromium, shots, width, settings, service, owner):
    """Create a webhook automation with the form, send a test, read its history."""
    import dataclasses

    from automation_helpers import Receiver, drain

    from regalia.service import Service

    settings = dataclasses.replace(settings, automation_allow_private=True)
    service.settings = settings
    key = service.create_api_key(owner)
    size = WIDTHS[width]
    with Receiver([(200, {})]) as rx, ThreadServer(settings, service) as server:
        context = chromium.new_context(viewport={"width": size[0], "height": size[1]})
        page = context.new_page()
        violations = csp_violations(page)

        def shot(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= size[0], name

        page.goto(server.url + "/login")
        page.fill("#api_key", key)
        page.click("button:has-text('Log in')")
        page.goto(server.url + "/registries/model/automations")
        page.fill("#a-name", "to-prod")
        page.select_option("#a-event", "ADD_ARTIFACT_ALIAS")
        page.select_option("#a-filter-kind", "alias_regex")
        page.fill("#a-filter-value", "^prod")
        page.select_option("#a-action", "webhook")
        page.fill("#a-target", rx.url)
        page.fill("#a-signing", "s3cret")
        shot("automations")
        page.click("button:has-text('Create automation')")
        page.wait_for_url("**/automations/*")
        assert page.locator("#state").inner_text() == "enabled"
        page.click("button:has-text('Send a test')")
        page.wait_for_load_state()
        live = Service(settings)
        try:
            auto_id = int(page.url.rsplit("/", 1)[1])

            def settled() -> bool:
                return all(d.status != "pending" for d in live.deliveries(owner, auto_id))

            # Playwright's sync API holds this thread's event loop: the worker gets its own.
            worker = threading.Thread(target=drain, args=(live, settled))
            worker.start()
            worker.join(30)
        finally:
            live.close()
        page.reload()
        assert page.locator("#deliveries .status-succeeded").count() == 1
        shot("automation")
        page.click("text=Payload and tries")
        assert "ADD_ARTIFACT_ALIAS" in page.locator("pre.payload").inner_text()
        assert "s3cret" not in page.content()
        shot("delivery")
        assert violations == []
        context.close()
    assert len(rx.requests) == 1


def test_finding11_pages_and_the_api_docs_meet_their_csp_and_cannot_be_framed(
    chromium, shots, settings, service, owner
):
    """The login page and Swagger UI at /docs load and work under their Content
    Security Policies with no violation; the policy is really enforced (an
    injected inline script is refused and reported); no page can be framed."""
    key = service.create_api_key(owner)
    with ThreadServer(settings, service) as server:
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        violations = csp_violations(page)
        page.goto(server.url + "/docs")
        page.locator(".opblock-tag", has_text="registries").first.wait_for()
        page.locator(".opblock-summary-path", has_text="/api/v1/registries").first.wait_for()
        page.click(".opblock-summary-path:has-text('/healthz')")  # open it, try it out
        page.click("button:has-text('Try it out')")
        page.click("button:has-text('Execute')")
        page.locator(".response-col_status", has_text="200").first.wait_for()
        page.screenshot(path=str(shots / "docs.png"))
        assert violations == []
        page.goto(server.url + "/login")
        page.fill("#api_key", key)
        page.click("button:has-text('Log in')")
        page.wait_for_url(server.url + "/")
        assert violations == []
        # A script injected into the page (as an XSS would) does not run.
        with page.expect_console_message(lambda m: "script-src" in m.text, timeout=5000):
            ran = page.evaluate(
                "() => { const s = document.createElement('script');"
                " s.textContent = 'window.injected = 1'; document.body.append(s);"
                " return window.injected === 1; }"
            )
        assert ran is False
        # Another site cannot frame a page (clickjacking): Chromium refuses to show it.
        refused = ("frame-ancestors", "X-Frame-Options")
        with page.expect_console_message(lambda m: any(r in m.text for r in refused), timeout=5000):
            page.set_content(f'<iframe id="f" src="{server.url}/"></iframe>')
        assert page.frame_locator("#f").locator("form[action='/logout']").count() == 0
        context.close()
