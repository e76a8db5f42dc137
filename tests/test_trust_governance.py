"""Issue 12, findings 6 and 8 and the error messages that named hidden registries:
who may manage a team, what creating a registry reveals, and what an error may
say about registries the caller cannot see.

Every test runs on SQLite and PostgreSQL, through a real server on 127.0.0.1,
each person calling the REST API with their own API key. The organization:

- ``admin``: the org admin (owner);
- ``rachel``: an org member, admin of the restricted registry ``Skunkworks``
  (she created it), whose protected alias is ``production``;
- ``oscar``: an org member outside ``Skunkworks``;
- ``vera``: an org viewer;
- team ``ml``: created by ``tara`` (so its admin), with the plain member
  ``mike``; ``ml`` is a ``member`` of ``Skunkworks`` and a ``viewer`` of the
  restricted registry ``Annex``; it has no role in ``Plain`` (an organization
  registry).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from servers import ThreadServer

from regalia.service import Actor, Service

SECRET = "Skunkworks"
CODENAME = "codename bluebird"  # Skunkworks' description: must never leak


class Person:
    """One user of the organization, calling the REST API with their own key."""

    def __init__(self, base_url: str, name: str, key: str) -> None:
        self.name = name
        self.http = httpx.Client(
            base_url=base_url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()


@dataclass
class Org:
    service: Service
    owner: Actor
    actors: dict[str, Actor]
    people: dict[str, Person]

    def __getitem__(self, name: str) -> Person:
        return self.people[name]

    def history(self, registry: str) -> list[dict[str, Any]]:
        """The registry's history as its admin (the org admin) reads it, newest first."""
        return self["admin"].ok("GET", f"/registries/{registry}/history", params={"limit": 1000})[
            "items"
        ]

    def team_rows(self, registry: str) -> list[tuple[str, str, str, str | None, str | None]]:
        """(actor, change, user, registry_role, team_role) of the team membership
        changes in ``registry``'s history, oldest first."""
        return [
            (
                e["actor"],
                e["details"]["change"],
                e["details"]["user"],
                e["details"].get("registry_role"),
                e["details"].get("team_role"),
            )
            for e in reversed(self.history(registry))
            if e["action"] == "role_change" and "change" in e["details"]
        ]

    def members(self, team: str = "ml") -> dict[str, str]:
        view = self["admin"].ok("GET", f"/teams/{team}")
        return {m["name"]: m["role"] for m in view["members"]}


@pytest.fixture
def org(service: Service, owner: Actor, settings) -> Iterator[Org]:
    s = service
    keys: dict[str, str] = {"admin": s.create_api_key(owner)}
    actors: dict[str, Actor] = {"admin": owner}
    for name, org_role in (
        ("rachel", "member"),
        ("oscar", "member"),
        ("vera", "viewer"),
        ("tara", "member"),
        ("mike", "member"),
    ):
        _, key = s.create_user(owner, name, org_role=org_role)
        assert key is not None
        keys[name] = key
        actors[name] = s.authenticate(key)
    s.create_registry(actors["rachel"], SECRET, visibility="restricted", description=CODENAME)
    s.protect_alias(actors["rachel"], SECRET, "production")
    s.create_registry(owner, "Annex", visibility="restricted")
    s.create_registry(owner, "Plain")
    s.create_team(actors["tara"], "ml")
    actors["tara"] = s.refresh_actor(actors["tara"])
    s.add_team_member(actors["tara"], "ml", "mike")
    actors["mike"] = s.refresh_actor(actors["mike"])
    s.set_registry_role(actors["rachel"], SECRET, team="ml", role="member")
    s.set_registry_role(owner, "Annex", team="ml", role="viewer")
    with ThreadServer(settings, s) as server:
        people = {name: Person(server.url, name, key) for name, key in keys.items()}
        yield Org(s, owner, actors, people)
        for person in people.values():
            person.http.close()


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code, body
    return dict(body)


def _reveals_nothing_of_secret(response: httpx.Response) -> None:
    """Nothing about Skunkworks beyond the name the caller typed: not its spelling,
    visibility, description, admin, protected aliases or collections."""
    text = response.text
    for secret in (SECRET, CODENAME, "restricted", "rachel", "production", "collection_count"):
        assert secret not in text, (secret, text)


# ======================================================================================
# Finding 6: POST /registries must not reveal a registry the caller cannot see
# ======================================================================================
@pytest.mark.parametrize("name", ["SKUNKWORKS", "skunkworks", "SkunkWorks"])
def test_finding6_outsider_creating_a_hidden_registrys_name_gets_409_and_nothing_else(org, name):
    oscar = org["oscar"]
    answers = []
    for exist_ok in (False, True):
        response = oscar("POST", "/registries", json={"name": name, "exist_ok": exist_ok})
        error = _error(response, 409, "already_exists")
        _reveals_nothing_of_secret(response)
        assert "not available" in error["message"]
        assert error["details"] == {"name": name}  # only what the caller sent
        answers.append(error)
    assert answers[0] == answers[1], "exist_ok must not change the answer"
    # Nothing was created, and the registry stays hidden from oscar.
    _error(oscar("GET", f"/registries/{name}"), 404, "registry_not_found")
    assert [r["name"] for r in org["admin"].ok("GET", "/registries")].count(SECRET) == 1


def test_finding6_outsider_with_the_exact_spelling_learns_only_that_the_name_is_taken(org):
    response = org["oscar"]("POST", "/registries", json={"name": SECRET, "exist_ok": True})
    error = _error(response, 409, "already_exists")
    assert error["details"] == {"name": SECRET}
    assert CODENAME not in response.text and "restricted" not in response.text
    assert "rachel" not in response.text and "production" not in response.text


def test_finding6_org_viewer_gets_403_whether_or_not_the_name_exists(org):
    vera = org["vera"]
    taken = vera("POST", "/registries", json={"name": SECRET.lower(), "exist_ok": True})
    free = vera("POST", "/registries", json={"name": "skunkworks2", "exist_ok": True})
    refused = _error(taken, 403, "permission_denied")
    assert refused["details"]["required_role"] == "member"
    assert _error(free, 403, "permission_denied") == refused  # the same answer: nothing learnt
    _reveals_nothing_of_secret(taken)


def test_finding6_recreating_a_registry_you_can_see_keeps_todays_behaviour(org):
    rachel, oscar = org["rachel"], org["oscar"]
    # Her own restricted registry, in another case: exist_ok returns it...
    view = rachel.ok("POST", "/registries", json={"name": "SKUNKWORKS", "exist_ok": True})
    assert (view["name"], view["role"], view["description"]) == (SECRET, "admin", CODENAME)
    # ... and without exist_ok the 409 names it.
    again = rachel("POST", "/registries", json={"name": "skunkworks"})
    error = _error(again, 409, "already_exists")
    assert error["details"] == {"registry": SECRET} and SECRET in error["message"]
    # An organization registry every member sees: oscar gets it back too.
    plain = oscar("POST", "/registries", json={"name": "plain", "exist_ok": True})
    assert plain.status_code == 201 and plain.json()["name"] == "Plain"
    assert plain.json()["role"] == "viewer"


def test_finding6_team_name_taken_is_the_only_thing_a_team_create_tells(org):
    """Teams and their members are visible to the whole organization (user
    listings show each user's teams), so exist_ok may return another's team."""
    oscar = org["oscar"]
    error = _error(oscar("POST", "/teams", json={"name": "ML"}), 409, "already_exists")
    assert error["details"] == {"name": "ML"}
    same = oscar.ok("POST", "/teams", json={"name": "ml", "exist_ok": True})
    assert {m["name"] for m in same["members"]} == {"tara", "mike"}
    assert org.members() == {"tara": "admin", "mike": "member"}  # oscar did not join
    _error(org["vera"]("POST", "/teams", json={"name": "ml", "exist_ok": True}), 403,
           "permission_denied")  # fmt: skip


# ======================================================================================
# Finding 8: only org admins and team admins manage a team; every change is recorded
# ======================================================================================
def test_finding8_plain_team_member_cannot_add_a_user_to_the_team(org):
    mike, oscar = org["mike"], org["oscar"]
    _error(oscar("GET", f"/registries/{SECRET}"), 404, "registry_not_found")
    before = {r: [e["id"] for e in org.history(r)] for r in (SECRET, "Annex")}

    error = _error(
        mike("POST", "/teams/ml/members", json={"user": "oscar"}), 403, "permission_denied"
    )
    assert error["details"]["required_role"] == "team admin"
    assert "team role 'admin'" in error["message"] and "'ml'" in error["message"]
    # Nor may he make himself an admin, or take others out.
    for method, path, body in (
        ("PUT", "/teams/ml/members/mike", {"role": "admin"}),
        ("POST", "/teams/ml/members", {"user": "mike", "role": "admin"}),
        ("DELETE", "/teams/ml/members/tara", None),
    ):
        refused = _error(mike(method, path, json=body), 403, "permission_denied")
        assert refused["details"]["required_role"] == "team admin"

    assert org.members() == {"tara": "admin", "mike": "member"}
    _error(oscar("GET", f"/registries/{SECRET}"), 404, "registry_not_found")  # no role given
    assert {r: [e["id"] for e in org.history(r)] for r in (SECRET, "Annex")} == before
    # An outsider (not in the team) is refused the same way.
    refused = _error(
        oscar("POST", "/teams/ml/members", json={"user": "oscar"}), 403, "permission_denied"
    )
    assert refused["details"] == {"required_role": "team admin", "team": "ml", "role": "none"}


def test_finding8_team_admin_adds_and_removes_and_the_registry_role_follows_at_once(org):
    tara, oscar = org["tara"], org["oscar"]
    # oscar's key is now remembered by the server (the 2 s cache) as a non-member.
    _error(oscar("GET", f"/registries/{SECRET}"), 404, "registry_not_found")
    plain_before = [e["id"] for e in org.history("Plain")]

    view = tara.ok("POST", "/teams/ml/members", json={"user": "oscar"})
    assert {m["name"]: m["role"] for m in view["members"]} == {
        "mike": "member",
        "oscar": "member",
        "tara": "admin",
    }
    # At once: the change cleared the remembered keys of this process.
    assert oscar.ok("GET", f"/registries/{SECRET}")["role"] == "member"
    assert oscar.ok("GET", "/registries/Annex")["role"] == "viewer"

    gone = tara.ok("DELETE", "/teams/ml/members/oscar")
    assert "oscar" not in {m["name"] for m in gone["members"]}
    _error(oscar("GET", f"/registries/{SECRET}"), 404, "registry_not_found")
    _error(oscar("GET", "/registries/Annex"), 404, "registry_not_found")

    # One row per change in each registry where the team holds a role, with that role.
    assert org.team_rows(SECRET) == [
        ("tara", "team_add", "oscar", "member", "member"),
        ("tara", "team_remove", "oscar", "member", None),
    ]
    assert org.team_rows("Annex") == [
        ("tara", "team_add", "oscar", "viewer", "member"),
        ("tara", "team_remove", "oscar", "viewer", None),
    ]
    assert [e["id"] for e in org.history("Plain")] == plain_before  # no role there: no row
    row = next(e for e in org.history(SECRET) if e["details"].get("change") == "team_remove")
    assert row["registry"] == SECRET and row["created_at"]
    assert row["details"]["previous_team_role"] == "member"
    # Registry members read the same history (rachel administers Skunkworks).
    mine = org["rachel"].ok("GET", f"/registries/{SECRET}/history")["items"]
    assert any(e["details"].get("change") == "team_add" for e in mine)


def test_finding8_org_admin_manages_any_team_and_role_changes_are_recorded(org):
    admin, vera = org["admin"], org["vera"]
    admin.ok("POST", "/teams/ml/members", json={"user": "vera", "role": "admin"})
    assert org.members()["vera"] == "admin"
    # The new team admin manages the team from her next request on.
    vera.ok("PUT", "/teams/ml/members/mike", json={"role": "admin"})
    admin.ok("PUT", "/teams/ml/members/vera", json={"role": "member"})
    assert org.members() == {"mike": "admin", "tara": "admin", "vera": "member"}
    error = _error(
        vera("POST", "/teams/ml/members", json={"user": "oscar"}), 403, "permission_denied"
    )
    assert error["details"]["role"] == "member"
    assert org.team_rows(SECRET)[-3:] == [
        ("admin", "team_add", "vera", "member", "admin"),
        ("vera", "team_role", "mike", "member", "admin"),
        ("admin", "team_role", "vera", "member", "member"),
    ]
    demoted = next(e for e in org.history("Annex") if e["details"].get("user") == "vera")
    assert demoted["details"]["previous_team_role"] == "admin"
    # A bad role is a clear 400 that names the rule; nothing changes.
    bad = _error(
        admin("PUT", "/teams/ml/members/vera", json={"role": "owner"}), 400, "invalid_request"
    )
    assert "'member' or 'admin'" in bad["message"]
    assert org.members()["vera"] == "member"


def test_finding8_the_last_team_admin_stays_unless_an_org_admin_acts(org):
    tara, mike = org["tara"], org["mike"]
    for method, path, body in (
        ("DELETE", "/teams/ml/members/tara", None),
        ("PUT", "/teams/ml/members/tara", {"role": "member"}),
    ):
        error = _error(tara(method, path, json=body), 409, "conflict")
        assert "last admin" in error["message"]
    assert org.members() == {"tara": "admin", "mike": "member"}
    # A plain member may leave: he loses the team's registry roles at once.
    assert mike.ok("GET", f"/registries/{SECRET}")["role"] == "member"
    mike.ok("DELETE", "/teams/ml/members/mike")
    _error(mike("GET", f"/registries/{SECRET}"), 404, "registry_not_found")
    assert org.team_rows(SECRET)[-1] == ("mike", "team_remove", "mike", "member", None)
    # Alone in the team, tara may leave; an org admin may remove the last admin anyway.
    org["admin"].ok("POST", "/teams/ml/members", json={"user": "oscar"})
    org["admin"].ok("DELETE", "/teams/ml/members/tara")
    assert org.members() == {"oscar": "member"}


def test_finding8_team_changes_through_the_sdk(org):
    """The HTTP SDK's team calls rebuild the views and the errors."""
    from regalia.errors import PermissionDenied
    from regalia.sdk.http import HttpBackend

    settings = org.service.settings
    base = str(org["tara"].http.base_url).removesuffix("/api/v1/").removesuffix("/api/v1")
    tara = HttpBackend(base, org["tara"].http.headers["Authorization"][7:], settings=settings)
    mike = HttpBackend(base, org["mike"].http.headers["Authorization"][7:], settings=settings)
    try:
        view = tara.add_team_member("ml", "oscar", role="admin")
        assert ("oscar", "admin") in {(m.name, m.role) for m in view.members}
        assert sorted(tara.get_team("ml").admins) == ["oscar", "tara"]
        assert tara.set_team_role("ml", "oscar", "member").admins == ["tara"]
        assert [t.name for t in tara.list_teams()] == ["ml"]
        with pytest.raises(PermissionDenied) as refused:
            mike.add_team_member("ml", "vera")
        assert refused.value.details["required_role"] == "team admin"
        left = tara.remove_team_member("ml", "oscar")
        assert "oscar" not in {m.name for m in left.members}
        assert tara.remove_team_member("ml", "oscar") == left  # a retried DELETE is harmless
    finally:
        tara.close()
        mike.close()


# ======================================================================================
# Error messages that named registries the caller cannot see
# ======================================================================================
def test_leak_delete_version_refused_by_a_protected_alias_in_a_hidden_registry(org, make_version):
    s, owner = org.service, org.owner
    mine = make_version(org.actors["oscar"], name="weights")
    s.link(owner, mine.membership_id, f"wandb-registry-{SECRET}/plans", ["production"])
    response = org["oscar"]("DELETE", f"/versions/{mine.membership_id}")
    error = _error(response, 409, "protected_alias")
    _reveals_nothing_of_secret(response)
    assert "a registry you cannot see" in error["message"]
    assert error["details"] == {"aliases": [], "registries": [], "hidden_registries": 1}

    # With one more in a registry he sees, that one is named.
    s.protect_alias(owner, "Plain", "gold")
    s.link(owner, mine.membership_id, "wandb-registry-Plain/picks", ["gold"])
    response = org["oscar"]("DELETE", f"/versions/{mine.membership_id}")
    error = _error(response, 409, "protected_alias")
    _reveals_nothing_of_secret(response)
    assert "'gold' in registry 'Plain'" in error["message"]
    assert error["details"] == {"aliases": ["gold"], "registries": ["Plain"],
                                "hidden_registries": 1}  # fmt: skip
    # Its admin (the org admin) sees both registries named.
    admin_error = _error(org["admin"]("DELETE", f"/versions/{mine.membership_id}"), 409,
                         "protected_alias")  # fmt: skip
    assert f"'production' in registry '{SECRET}'" in admin_error["message"]
    assert admin_error["details"]["hidden_registries"] == 0
    assert s.get_version(owner, mine.membership_id).index == 0  # nothing deleted


def test_leak_delete_version_linked_in_a_hidden_registry_does_not_name_it(org, make_version):
    mine = make_version(org.actors["oscar"], name="weights")
    org.service.link(org.owner, mine.membership_id, f"wandb-registry-{SECRET}/plans")
    response = org["oscar"]("DELETE", f"/versions/{mine.membership_id}")
    error = _error(response, 403, "permission_denied")
    _reveals_nothing_of_secret(response)
    assert "a registry you cannot see" in error["message"]
    assert org.service.get_version(org.owner, mine.membership_id).index == 0


def test_leak_idempotent_replay_does_not_show_a_registry_the_caller_lost(org, make_version):
    """A retried link (same Idempotency-Key) answers with the version as it is now;
    after the caller lost their role there, that is a 404, not the registry's view."""
    mike = org["mike"]
    mine = make_version(org.actors["mike"], name="weights")
    path, key = f"/versions/{mine.membership_id}/links", {"Idempotency-Key": "link-1"}
    body = {"target": f"wandb-registry-{SECRET}/plans", "aliases": ["candidate"]}
    first = mike("POST", path, json=body, headers=key)
    assert first.status_code == 201, first.text
    assert mike("POST", path, json=body, headers=key).json() == {**first.json(), "created": False}

    org["tara"].ok("DELETE", "/teams/ml/members/mike")
    replay = mike("POST", path, json=body, headers=key)
    _error(replay, 404, "version_not_found")
    _reveals_nothing_of_secret(replay)
