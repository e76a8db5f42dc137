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


def log_in(client: httpx.Client, key: str, next: str = "/") -> httpx.Response:
    """As a browser does: the form first (its token), then the post."""
    form = client.get("/login").text
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', form).group(1)
    return client.post("/login", data={"api_key": key, "next": next, "nonce": nonce})


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_pages_need_a_login_and_a_valid_key(site, service, owner):
    with browser(site) as b:
        r = b.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
        r = log_in(b, "rg_not-a-key")
        assert r.status_code == 401 and "That API key was refused: this is not a Regalia" in r.text
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
        r = b.post("/registries", data={"csrf": csrf_of(home.text), "name": "Vision",
                                        "visibility": "restricted", "types": "model"})  # fmt: skip
        assert r.headers["location"] == "/registries/Vision"
        assert "accepts: model" in b.get("/registries/Vision").text
        r = b.post("/registries", data={"csrf": csrf_of(home.text), "name": "a/b"})
        assert 'role="alert">registry name' in b.get(r.headers["location"]).text


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
        r = log_in(b, key, next="//evil.example/x")
        assert r.headers["location"] == "/"
        r = log_in(b, key, next="/registries/model")
        assert r.headers["location"] == "/registries/model"


def test_the_login_form_needs_its_own_token(site, service, owner):
    """A page elsewhere cannot log a browser in to someone else's account."""
    with browser(site) as b:
        r = b.post("/login", data={"api_key": service.create_api_key(owner), "next": "/"})
        assert r.status_code == 400 and "The form expired" in r.text
        assert b.get("/").status_code == 303  # not logged in


def test_the_seed_steps_over_plain_http(site, service, owner, make_version):
    """Registry -> settings (+ protected alias) -> collection (View details) ->
    version (View, + alias, × alias), as an admin and as a member."""
    v = make_version(owner, "weights", metadata={"acc": 0.91}, description="*best* so far")
    service.link(owner, v.membership_id, "wandb-registry-model/zoo", aliases=["staging"])
    _, member_key = service.create_user(owner, "mia")
    service.set_registry_role(owner, "model", user="mia", role="member")
    with browser(site) as b:
        log_in(b, service.create_api_key(owner))
        reg = b.get("/registries/model").text
        assert 'href="/registries/model/collections/zoo">View details</a>' in reg
        settings = b.get("/registries/model/settings").text
        assert 'aria-label="Add protected alias"' in settings
        r = b.post("/registries/model/settings/protected-aliases",
                   data={"csrf": csrf_of(settings), "alias": "production"})  # fmt: skip
        assert r.status_code == 303
        settings = b.get("/registries/model/settings").text
        assert re.search(r'class="chip protected" data-alias="production"', settings)
        coll = b.get("/registries/model/collections/zoo").text
        b.post("/registries/model/collections/zoo/card",
               data={"csrf": csrf_of(coll), "description": "## Zoo\n\n<script>x</script>",
                     "add_tags": "animals, demo"})  # fmt: skip
        coll = b.get("/registries/model/collections/zoo").text
        assert "<h2>Zoo</h2>" in coll and "<script>x" not in coll  # Markdown, no raw HTML
        assert 'aria-label="Remove tag demo"' in coll
        b.post("/registries/model/collections/zoo/card",
               data={"csrf": csrf_of(coll), "remove_tag": "demo"})  # fmt: skip
        assert service.get_collection(owner, "model", "zoo").tags == ["animals"]
        coll = b.get("/registries/model/collections/zoo").text
        assert 'href="/registries/model/collections/zoo/v0" aria-label="View v0">View</a>' in coll
        page = b.get("/registries/model/collections/zoo/v0").text
        assert "<em>best</em> so far" in page and "0.91" in page
        assert "api.artifact(&#34;wandb-registry-model/zoo:v0&#34;)" in page
        b.post("/registries/model/collections/zoo/v0/aliases",
               data={"csrf": csrf_of(page), "alias": "best_model, production"})  # fmt: skip
        page = b.get("/registries/model/collections/zoo/v0").text
        assert re.search(r'class="chip alias" data-alias="best_model"', page)
        assert re.search(r'class="chip protected" data-alias="production"', page)
        [link] = re.findall(r'href="(/registries/model/collections/zoo/v0/files/[0-9a-f]+)"', page)
        assert b.get(link).content == b"weights"
    with browser(site) as b:
        log_in(b, member_key)
        page = b.get("/registries/model/collections/zoo/v0").text
        assert 'aria-label="Remove alias best_model"' in page  # a member may remove it
        assert 'aria-label="Remove alias production"' not in page  # not a protected one
        assert 'aria-label="Add protected alias"' not in b.get("/registries/model/settings").text
        assert 'id="unlink"' not in page  # a protected version: admins only
        r = b.post("/registries/model/collections/zoo/v0/aliases/remove",
                   data={"csrf": csrf_of(page), "alias": "production"})  # fmt: skip
        assert r.status_code == 303  # the server refuses it anyway, and says so:
        shown = b.get(r.headers["location"]).text
        assert re.search(r'role="alert">you need the registry role &#39;admin&#39;', shown)
        assert 'role="alert"' not in b.get(r.headers["location"]).text  # shown once
    assert "production" in service.resolve(owner, "wandb-registry-model/zoo:production").aliases
    _, viewer_key = service.create_user(owner, "vic")
    service.set_registry_role(owner, "model", user="vic", role="viewer")
    with browser(site) as b:
        log_in(b, viewer_key)
        page = b.get("/registries/model/collections/zoo/v0").text
        assert 'aria-label="Add aliases"' not in page and "Remove alias" not in page
        assert 'id="unlink"' not in page
    with browser(site) as b:  # the admin unlinks it
        log_in(b, service.create_api_key(owner))
        page = b.get("/registries/model/collections/zoo/v0").text
        r = b.post("/registries/model/collections/zoo/v0/unlink", data={"csrf": csrf_of(page)})
        assert r.headers["location"] == "/registries/model/collections/zoo"
        assert "No versions linked." in b.get(r.headers["location"]).text


def test_a_page_that_cannot_be_shown_explains_itself_in_html(site, service, owner):
    service.create_registry(owner, "secret", visibility="restricted")
    _, key = service.create_user(owner, "otto")
    with browser(site) as b:
        log_in(b, key)
        r = b.get("/registries/secret", headers={"Accept": "text/html"})
        assert r.status_code == 404 and "text/html" in r.headers["content-type"]
        assert "Not found" in r.text and "secret" in r.text
        headers = {"Accept": "text/html", "Authorization": f"Bearer {key}"}
        api = b.get("/api/v1/registries/secret", headers=headers)
        assert api.json()["error"]["code"]  # the API keeps its JSON envelope
