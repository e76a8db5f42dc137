"""The web UI's foundation over real HTTP: logging in with an API key (a sealed,
HttpOnly session cookie), CSRF tokens on forms, logging out, the home page."""

from __future__ import annotations

import re

import httpx
import pytest
from servers import ThreadServer


@pytest.fixture
def site(settings, service, owner):
    with ThreadServer(settings, service) as server:
        yield server


def browser(site) -> httpx.Client:
    return httpx.Client(base_url=site.url, follow_redirects=False)


def log_in(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/login", data={"api_key": key, "next": "/"})


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_pages_need_a_login_and_a_valid_key(site, service, owner):
    with browser(site) as b:
        r = b.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
        r = log_in(b, "rg_not-a-key")
        assert r.status_code == 401 and "That API key is not valid" in r.text
        r = log_in(b, service.create_api_key(owner))
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        home = b.get("/")
        assert home.status_code == 200
        names = re.findall(r'<h2><a href="/registries/([^"]+)">', home.text)
        assert names == ["dataset", "model"]
        assert "your role: <strong>admin</strong>" in home.text
        assert "Create registry" in home.text


def test_a_viewer_is_not_offered_what_it_may_not_do(site, service, owner):
    _, key = service.create_user(owner, "vic", org_role="viewer")
    with browser(site) as b:
        log_in(b, key)
        home = b.get("/")
    assert "your role: <strong>viewer</strong>" in home.text
    assert "Create registry" not in home.text


def test_logout_needs_the_form_token_and_ends_the_session(site, service, owner):
    with browser(site) as b:
        log_in(b, service.create_api_key(owner))
        page = b.get("/").text
        assert b.post("/logout", data={"csrf": "0" * 64}).status_code == 400
        assert b.get("/").status_code == 200  # still logged in
        r = b.post("/logout", data={"csrf": csrf_of(page)})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert b.get("/").status_code == 303


def test_a_revoked_key_or_a_forged_cookie_ends_the_session(site, service, owner):
    _, key = service.create_user(owner, "rita")
    with browser(site) as b:
        log_in(b, key)
        assert b.get("/").status_code == 200
        service.revoke_api_keys(owner, "rita")
        site.server.config.app.state.auth.forget()
        assert b.get("/").status_code == 303
    with browser(site) as b:
        b.cookies.set("regalia_session", "gAAAAforged")
        assert b.get("/").status_code == 303


def test_login_goes_back_only_to_this_site(site, service, owner):
    key = service.create_api_key(owner)
    with browser(site) as b:
        r = b.post("/login", data={"api_key": key, "next": "//evil.example/x"})
        assert r.headers["location"] == "/"
        r = b.post("/login", data={"api_key": key, "next": "/registries/model"})
        assert r.headers["location"] == "/registries/model"
