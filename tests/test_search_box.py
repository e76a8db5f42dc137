"""The global search box (SPEC §6): registry and collection names, collection
tags, version tags, aliases and descriptions, case-insensitively by word
prefix, only what the caller may see; through the service and the REST API."""

from __future__ import annotations

import httpx
from servers import ThreadServer
from test_ui import log_in


def seed(service, owner, make_version):
    service.create_registry(owner, "Vision", description="Image models for the zoo app")
    service.create_registry(owner, "secret-lab", visibility="restricted")
    a = make_version(owner, description="first")
    b = make_version(owner)
    service.link(owner, a.membership_id, "wandb-registry-Vision/zoo-classifier",
                 aliases=["Production-US"])  # fmt: skip
    service.link(owner, b.membership_id, "wandb-registry-model/zoo", aliases=["staging"])
    service.update_version(owner, service.resolve(owner, "wandb-registry-model/zoo:v0")
                           .membership_id, add_tags=["Golden-Set"])  # fmt: skip
    service.update_collection(owner, "model", "zoo", add_tags=["Animals"],
                              description="Classifies animals")  # fmt: skip
    c = make_version(owner)
    service.link(owner, c.membership_id, "wandb-registry-secret-lab/hidden", aliases=["prod-x"])


def test_search_matches_by_word_prefix_and_groups_results(service, owner, make_version):
    seed(service, owner, make_version)
    found = service.search(owner, "prod")
    assert [h.value for h in found.versions] == ["prod-x", "Production-US"]  # newest first
    hit = next(h for h in found.versions if h.value == "Production-US")
    assert (hit.field, hit.version.qualified_name) == (
        "alias", "wandb-registry-Vision/zoo-classifier:v0")  # fmt: skip
    assert [r.name for r in service.search(owner, "IMAGE").registries] == ["Vision"]
    assert [r.name for r in service.search(owner, "vis").registries] == ["Vision"]
    assert [c.name for c in service.search(owner, "classifier").collections] == ["zoo-classifier"]
    assert [c.name for c in service.search(owner, "anim").collections] == ["zoo"]  # tag, card
    assert [(h.field, h.value) for h in service.search(owner, "golden").versions] == [
        ("tag", "Golden-Set")]  # fmt: skip
    assert service.search(owner, "lassif").collections == []  # not a word prefix


def test_version_descriptions_are_searched_by_word_prefix(service, owner, make_version):
    v = make_version(owner, description="Fine-tuned on ImageNet_21k, best so far")
    link = service.link(owner, v.membership_id, "wandb-registry-model/zoo")
    found = service.search(owner, "imagenet 21")
    assert [(h.field, h.version.membership_id) for h in found.versions] == [
        ("description", link.membership_id)]  # fmt: skip
    assert service.search(owner, "tuned BEST").versions[0].field == "description"
    assert service.search(owner, "magenet").versions == []  # not a word prefix
    service.update_version(owner, link.membership_id, description="retrained from scratch")
    assert service.search(owner, "imagenet").versions == []  # the index follows the change
    assert [h.field for h in service.search(owner, "scratch").versions] == ["description"]
    assert service.search(owner, "  ").versions == []


def test_search_shows_only_what_the_caller_may_see(service, owner, make_version):
    seed(service, owner, make_version)
    _, key = service.create_user(owner, "outsider")
    outsider = service.authenticate(key)
    found = service.search(outsider, "prod")
    assert [h.value for h in found.versions] == ["Production-US"]  # not secret-lab's prod-x
    assert service.search(outsider, "secret").registries == []


def test_the_search_api_and_page(settings, service, owner, make_version):
    seed(service, owner, make_version)
    key = service.create_api_key(owner)
    with ThreadServer(settings, service) as server:
        r = httpx.get(server.url + "/api/v1/search", params={"q": "staging"},
                      headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert r.status_code == 200
        [hit] = r.json()["versions"]
        assert hit["value"] == "staging" and hit["version"]["collection"]["name"] == "zoo"
        with httpx.Client(base_url=server.url) as b:
            log_in(b, key)
            page = b.get("/search", params={"q": "staging"}).text
            assert 'href="/registries/model/collections/zoo/v0">wandb-registry-model/zoo:v0' in page
            assert "Nothing you may see matches" in b.get("/search", params={"q": "zzz"}).text
