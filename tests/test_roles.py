"""SPEC §4 roles: one test per cell of the role table, then the rules around it
(teams, org roles, visibility, registry creation, service accounts, source
artifacts), on SQLite and PostgreSQL.

Every role is set up as in real use: an org member with an API key, given a
role in the restricted custom registry ``Prod`` (see ``roles_helpers``). Every
refused write is checked to change nothing.

Every test runs twice: against the service in this process, and through a real
server on 127.0.0.1, each actor calling the REST API with its own API key
(``ServiceOverHttp``), so the server enforces every cell of the table.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from http_service import ServiceOverHttp
from roles_helpers import (
    COLLECTION,
    PROTECTED,
    REGISTRY,
    ROLES,
    TARGET,
    RoleWorld,
    build_world,
    new_actor,
)
from servers import ThreadServer

from regalia.core.roles import MIN_ROLE, Permission, RegistryRole, allows, require
from regalia.errors import (
    ArtifactNotFound,
    CollectionNotFound,
    InvalidRequest,
    PermissionDenied,
    ProtectedAlias,
    RegistryNotFound,
    TypeMismatch,
    VersionNotFound,
)
from regalia.service import Actor, Service

FRESH = "fresh"  # a collection that does not exist yet
FRESH_TARGET = f"wandb-registry-{REGISTRY}/{FRESH}"


@pytest.fixture(params=["service", "http"])
def service(request, settings, clock) -> Iterator[Service | ServiceOverHttp]:
    local = Service(settings, clock=clock)
    if request.param == "service":
        yield local
    else:
        with ThreadServer(settings, local) as server:
            remote = ServiceOverHttp(local, server.url, settings)
            yield remote
            remote.close()
    local.close()


@pytest.fixture
def world(service, owner, make_version) -> RoleWorld:
    return build_world(service, owner, make_version)


def _denied(excinfo: pytest.ExceptionInfo[PermissionDenied], role: str) -> None:
    assert excinfo.value.details["required_role"] == role, excinfo.value.details


# ======================================================================================
# Row 1: see registry, collections, versions, metadata, aliases, history; search
# ======================================================================================
def _assert_sees_everything(world: RoleWorld, actor: Actor, role: str) -> None:
    s = world.service
    listed = {r.name: r for r in s.list_registries(actor)}
    assert REGISTRY in listed
    assert listed[REGISTRY].role == role

    reg = s.get_registry(actor, REGISTRY)
    assert reg.protected_aliases == [PROTECTED]
    assert reg.collection_count == 1

    coll = s.get_collection(actor, REGISTRY, COLLECTION)
    assert (coll.description, coll.tags, coll.version_count) == ("the card", ["vision"], 2)

    latest = s.resolve(actor, TARGET)
    assert latest.index == 1
    assert sorted(latest.aliases) == ["latest", "staging"]

    held = s.resolve(actor, f"{TARGET}:{PROTECTED}")
    assert held.index == 0
    assert held.protected_aliases == [PROTECTED]
    assert held.metadata == {"accuracy": 0.9}
    assert held.description == "first model"
    assert held.tags == ["baseline"]
    assert s.get_version(actor, world.held.membership_id).index == 0

    actions = [(e.action, e.version_index, e.alias) for e in s.history(actor, REGISTRY).items]
    assert ("link", 0, None) in actions
    assert ("alias_add", 0, PROTECTED) in actions
    assert s.history(actor, REGISTRY, COLLECTION, alias=PROTECTED).items
    assert s.alias_at(actor, REGISTRY, COLLECTION, PROTECTED, s.now()) == 0
    assert any(m.name == actor.name for m in s.registry_members(actor, REGISTRY))


def test_role_table_restricted_viewer_can_see_registry_versions_aliases_history_and_search(world):
    """Search has no service of its own yet: seeing is listing and resolving."""
    actor = world.actor("restricted_viewer")
    _assert_sees_everything(world, actor, "restricted_viewer")


def test_role_table_viewer_can_see_registry_versions_aliases_history_and_search(world):
    _assert_sees_everything(world, world.actor("viewer"), "viewer")


def test_role_table_member_can_see_registry_versions_aliases_history_and_search(world):
    _assert_sees_everything(world, world.actor("member"), "member")


def test_role_table_admin_can_see_registry_versions_aliases_history_and_search(world):
    _assert_sees_everything(world, world.actor("admin"), "admin")


# ======================================================================================
# Row 2: download files, use_artifact
# ======================================================================================
def _assert_can_download(world: RoleWorld, actor: Actor) -> None:
    s = world.service
    expected = s.files(world.owner, world.held.membership_id)
    assert len(expected) == 1
    assert s.files(actor, world.held.membership_id) == expected
    assert all(s.blobs.has(f.digest) for f in expected)
    run = s.start_run(actor, actor.name, "proj", f"run-{actor.name}")
    s.use(actor, world.held.membership_id, run)
    assert s.lineage(world.owner, world.held.membership_id)["used_by"] == [run]


def test_role_table_restricted_viewer_cannot_download_files(world):
    s = world.service
    actor = world.actor("restricted_viewer")
    with pytest.raises(PermissionDenied) as exc:
        s.files(actor, world.held.membership_id)
    _denied(exc, "viewer")
    run = s.start_run(actor, actor.name, "proj", "run-rv")
    with pytest.raises(PermissionDenied) as exc:
        s.use(actor, world.held.membership_id, run)
    _denied(exc, "viewer")
    assert s.lineage(world.owner, world.held.membership_id)["used_by"] == []


def test_role_table_viewer_can_download_files(world):
    _assert_can_download(world, world.actor("viewer"))


def test_role_table_member_can_download_files(world):
    _assert_can_download(world, world.actor("member"))


def test_role_table_admin_can_download_files(world):
    _assert_can_download(world, world.actor("admin"))


# ======================================================================================
# Row 3: link versions, create collections, edit cards, descriptions and tags
# ======================================================================================
def _assert_cannot_link_or_edit(world: RoleWorld, actor: Actor) -> None:
    s = world.service
    mine = world.make_version(actor, name="mine")  # a source the actor may read
    before = world.snapshot(FRESH)
    for target in (TARGET, FRESH_TARGET):
        with pytest.raises(PermissionDenied) as exc:
            s.link(actor, mine.membership_id, target)
        _denied(exc, "member")
    with pytest.raises(PermissionDenied) as exc:
        s.update_collection(actor, REGISTRY, COLLECTION, description="x", add_tags=["x"])
    _denied(exc, "member")
    with pytest.raises(PermissionDenied) as exc:
        s.update_collection(actor, REGISTRY, COLLECTION, remove_tags=["vision"])
    _denied(exc, "member")
    with pytest.raises(PermissionDenied) as exc:
        s.update_version(
            actor,
            world.held.membership_id,
            description="x",
            metadata={"accuracy": 0},
            add_tags=["x"],
            remove_tags=["baseline"],
        )
    _denied(exc, "member")
    assert world.snapshot(FRESH) == before
    assert before["collections"][FRESH] is None
    assert s.links_of(world.owner, mine.membership_id) == []


def _assert_can_link_and_edit(world: RoleWorld, actor: Actor) -> None:
    s = world.service
    mine = world.make_version(actor, name="mine")
    linked = s.link(actor, mine.membership_id, TARGET)
    assert (linked.index, linked.aliases) == (2, ["latest"])
    assert s.resolve(world.owner, TARGET).index == 2

    made = s.link(actor, mine.membership_id, FRESH_TARGET)
    assert made.collection.name == FRESH
    assert s.get_collection(world.owner, REGISTRY, FRESH).type == "model"

    coll = s.update_collection(
        actor,
        REGISTRY,
        COLLECTION,
        description="new card",
        add_tags=["edited"],
        remove_tags=["vision"],
    )
    assert (coll.description, coll.tags) == ("new card", ["edited"])

    s.update_version(
        actor,
        world.held.membership_id,
        description="reviewed",
        metadata={"accuracy": 0.95},
        add_tags=["reviewed"],
    )
    source = s.resolve(world.owner, f"{world.owner.name}/proj/zoo:v0")  # R8: on the source
    assert (source.description, source.metadata) == ("reviewed", {"accuracy": 0.95})
    assert sorted(source.tags) == ["baseline", "reviewed"]
    actors = {e.actor for e in s.history(world.owner, REGISTRY).items if e.action == "link"}
    assert actor.name in actors


def test_role_table_restricted_viewer_cannot_link_versions(world):
    """Nor create collections, nor edit cards, descriptions and tags."""
    _assert_cannot_link_or_edit(world, world.actor("restricted_viewer"))


def test_role_table_viewer_cannot_link_versions(world):
    """Nor create collections, nor edit cards, descriptions and tags."""
    _assert_cannot_link_or_edit(world, world.actor("viewer"))


def test_role_table_member_can_link_versions_create_collections_and_edit(world):
    _assert_can_link_and_edit(world, world.actor("member"))


def test_role_table_admin_can_link_versions_create_collections_and_edit(world):
    _assert_can_link_and_edit(world, world.actor("admin"))


# ======================================================================================
# Row 4: add, move, remove unprotected aliases; unlink unprotected versions
# ======================================================================================
def _assert_cannot_edit_unprotected_aliases(world: RoleWorld, actor: Actor) -> None:
    s = world.service
    held, free = world.held.membership_id, world.free.membership_id
    before = world.snapshot()
    attempts = [
        lambda: s.add_aliases(actor, held, ["candidate"]),  # add
        lambda: s.add_aliases(actor, held, ["staging"]),  # move from v1
        lambda: s.remove_aliases(actor, free, ["staging"]),  # remove
        lambda: s.set_aliases(actor, free, []),
        lambda: s.unlink(actor, free),  # v1 holds no protected alias
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied) as exc:
            attempt()
        _denied(exc, "member")
    assert world.snapshot() == before
    assert world.aliases(world.free) == ["latest", "staging"]


def _assert_can_edit_unprotected_aliases(world: RoleWorld, actor: Actor) -> None:
    s = world.service
    held, free = world.held.membership_id, world.free.membership_id
    s.add_aliases(actor, held, ["candidate"])
    assert world.aliases(world.held) == ["candidate", PROTECTED]
    s.add_aliases(actor, held, ["staging"])  # moves it off v1
    assert world.aliases(world.held) == ["candidate", PROTECTED, "staging"]
    assert world.aliases(world.free) == ["latest"]
    s.remove_aliases(actor, held, ["candidate"])
    assert world.aliases(world.held) == [PROTECTED, "staging"]

    s.unlink(actor, free)
    with pytest.raises(VersionNotFound):
        s.resolve(world.owner, f"{TARGET}:v1")
    assert s.resolve(world.owner, TARGET).index == 0  # R4: latest moved back
    assert s.resolve(world.owner, f"{world.owner.name}/proj/zoo:v1")  # R9: source stays
    done = {
        (e.action, e.alias) for e in s.history(world.owner, REGISTRY).items if e.actor == actor.name
    }
    assert {
        ("alias_add", "candidate"),
        ("alias_add", "staging"),
        ("alias_remove", "candidate"),
        ("unlink", None),
    } <= done


def test_role_table_restricted_viewer_cannot_add_move_remove_unprotected_aliases(world):
    """Nor unlink unprotected versions."""
    _assert_cannot_edit_unprotected_aliases(world, world.actor("restricted_viewer"))


def test_role_table_viewer_cannot_add_move_remove_unprotected_aliases(world):
    """Nor unlink unprotected versions."""
    _assert_cannot_edit_unprotected_aliases(world, world.actor("viewer"))


def test_role_table_member_can_add_move_remove_unprotected_aliases(world):
    """And unlink versions that hold no protected alias."""
    _assert_can_edit_unprotected_aliases(world, world.actor("member"))


def test_role_table_admin_can_add_move_remove_unprotected_aliases(world):
    """And unlink versions that hold no protected alias."""
    _assert_can_edit_unprotected_aliases(world, world.actor("admin"))


# ======================================================================================
# Row 5: create and delete automations
# ======================================================================================
def _automation_rights(role: str) -> bool:
    registry_role = RegistryRole(role)
    allowed = allows(registry_role, Permission.AUTOMATION_EDIT)
    if allowed:
        require(registry_role, Permission.AUTOMATION_EDIT, REGISTRY)
    else:
        with pytest.raises(PermissionDenied) as exc:
            require(registry_role, Permission.AUTOMATION_EDIT, REGISTRY)
        _denied(exc, "member")
    assert MIN_ROLE[Permission.AUTOMATION_EDIT] is RegistryRole.MEMBER
    return allowed


def test_role_table_restricted_viewer_cannot_create_or_delete_automations():
    """Automations have no service yet (a later issue): this checks the permission
    vocabulary in regalia.core.roles that the service will enforce."""
    assert not _automation_rights("restricted_viewer")


def test_role_table_viewer_cannot_create_or_delete_automations():
    """Automations have no service yet (a later issue): this checks the permission
    vocabulary in regalia.core.roles that the service will enforce."""
    assert not _automation_rights("viewer")


def test_role_table_member_can_create_and_delete_automations():
    """Automations have no service yet (a later issue): this checks the permission
    vocabulary in regalia.core.roles that the service will enforce."""
    assert _automation_rights("member")


def test_role_table_admin_can_create_and_delete_automations():
    """Automations have no service yet (a later issue): this checks the permission
    vocabulary in regalia.core.roles that the service will enforce."""
    assert _automation_rights("admin")


# ======================================================================================
# Row 6: protected aliases: define, add, move, remove; unlink or delete what holds one
# ======================================================================================
def _assert_cannot_touch_protected(world: RoleWorld, actor: Actor) -> None:
    s = world.service
    held, free = world.held.membership_id, world.free.membership_id
    before = world.snapshot()
    for attempt in (
        lambda: s.protect_alias(actor, REGISTRY, "golden"),
        lambda: s.unprotect_alias(actor, REGISTRY, PROTECTED),
    ):
        with pytest.raises(PermissionDenied) as exc:
            attempt()
        _denied(exc, "admin")
    for attempt in (
        lambda: s.add_aliases(actor, free, [PROTECTED]),  # move
        lambda: s.remove_aliases(actor, held, [PROTECTED]),
        lambda: s.unlink(actor, held),
        lambda: s.delete_collection(actor, REGISTRY, COLLECTION),
    ):
        with pytest.raises(PermissionDenied):
            attempt()
    assert world.snapshot() == before


def test_role_table_restricted_viewer_cannot_define_or_touch_protected_aliases(world):
    _assert_cannot_touch_protected(world, world.actor("restricted_viewer"))


def test_role_table_viewer_cannot_define_or_touch_protected_aliases(world):
    _assert_cannot_touch_protected(world, world.actor("viewer"))


def test_role_table_viewer_refused_protected_alias_action_is_told_admin_is_needed(world):
    s = world.service
    actor = world.actor("viewer")
    held, free = world.held.membership_id, world.free.membership_id
    for attempt in (
        lambda: s.add_aliases(actor, free, [PROTECTED]),
        lambda: s.remove_aliases(actor, held, [PROTECTED]),
        lambda: s.unlink(actor, held),
        lambda: s.delete_collection(actor, REGISTRY, COLLECTION),
    ):
        with pytest.raises(PermissionDenied) as exc:
            attempt()
        _denied(exc, "admin")


def test_role_table_member_cannot_define_protected_aliases(world):
    s = world.service
    actor = world.actor("member")
    before = world.snapshot()
    with pytest.raises(PermissionDenied) as exc:
        s.protect_alias(actor, REGISTRY, "golden")
    _denied(exc, "admin")
    with pytest.raises(PermissionDenied) as exc:
        s.unprotect_alias(actor, REGISTRY, PROTECTED)
    _denied(exc, "admin")
    assert world.snapshot() == before
    assert s.get_registry(world.owner, REGISTRY).protected_aliases == [PROTECTED]


def test_role_table_member_cannot_add_protected_alias(world):
    """Not by hand, not in another case, not while linking (the link is not made)."""
    s = world.service
    s.protect_alias(world.owner, REGISTRY, "golden")  # held by nobody yet
    actor = world.actor("member")
    mine = world.make_version(actor, name="mine")
    before = world.snapshot(FRESH)
    for attempt in (
        lambda: s.add_aliases(actor, world.free.membership_id, ["golden"]),
        lambda: s.add_aliases(actor, world.free.membership_id, ["GOLDEN"]),
        lambda: s.add_aliases(actor, world.free.membership_id, ["candidate", "golden"]),
        lambda: s.link(actor, mine.membership_id, TARGET, ["golden"]),
        lambda: s.link(actor, mine.membership_id, FRESH_TARGET, ["golden"]),
        lambda: s.link(actor, world.free.membership_id, TARGET, ["golden"]),  # R3 re-link
    ):
        with pytest.raises(PermissionDenied) as exc:
            attempt()
        _denied(exc, "admin")
    assert world.snapshot(FRESH) == before
    assert world.aliases(world.free) == ["latest", "staging"]


def test_role_table_member_cannot_move_or_remove_protected_alias(world):
    s = world.service
    actor = world.actor("member")
    held, free = world.held.membership_id, world.free.membership_id
    before = world.snapshot()
    for attempt in (
        lambda: s.add_aliases(actor, free, [PROTECTED]),
        lambda: s.add_aliases(actor, free, [PROTECTED.upper()]),
        lambda: s.remove_aliases(actor, held, [PROTECTED]),
        lambda: s.set_aliases(actor, held, []),
    ):
        with pytest.raises(PermissionDenied) as exc:
            attempt()
        _denied(exc, "admin")
    assert world.snapshot() == before
    assert world.aliases(world.held) == [PROTECTED]


def test_role_table_member_cannot_unlink_version_holding_protected_alias(world):
    s = world.service
    actor = world.actor("member")
    before = world.snapshot()
    with pytest.raises(PermissionDenied) as exc:
        s.unlink(actor, world.held.membership_id)
    _denied(exc, "admin")
    assert world.snapshot() == before
    assert s.resolve(world.owner, f"{TARGET}:{PROTECTED}").index == 0


def test_role_table_member_cannot_delete_collection_holding_protected_alias(world):
    """A collection without one the member may delete (the contrast)."""
    s = world.service
    actor = world.actor("member")
    before = world.snapshot()
    with pytest.raises(PermissionDenied) as exc:
        s.delete_collection(actor, REGISTRY, COLLECTION)
    _denied(exc, "admin")
    assert world.snapshot() == before

    s.link(actor, world.make_version(actor, name="mine").membership_id, FRESH_TARGET, ["wip"])
    s.delete_collection(actor, REGISTRY, FRESH)
    with pytest.raises(CollectionNotFound):
        s.get_collection(world.owner, REGISTRY, FRESH)


def test_role_table_admin_can_define_protected_aliases(world):
    s = world.service
    actor = world.actor("admin")
    assert s.protect_alias(actor, REGISTRY, "golden") == sorted(["golden", PROTECTED])
    assert sorted(s.get_registry(world.owner, REGISTRY).protected_aliases) == [
        "golden",
        PROTECTED,
    ]
    assert s.unprotect_alias(actor, REGISTRY, PROTECTED) == ["golden"]
    assert s.resolve(world.owner, f"{TARGET}:{PROTECTED}").protected_aliases == []
    done = {
        (e.action, e.alias) for e in s.history(world.owner, REGISTRY).items if e.actor == actor.name
    }
    assert done == {("protected_alias_add", "golden"), ("protected_alias_remove", PROTECTED)}


def test_role_table_admin_can_add_move_remove_protected_alias(world):
    s = world.service
    actor = world.actor("admin")
    s.protect_alias(world.owner, REGISTRY, "golden")
    free = world.free.membership_id
    s.add_aliases(actor, free, ["golden"])
    s.add_aliases(actor, free, [PROTECTED])  # moves it off v0
    assert world.aliases(world.held) == []
    assert world.aliases(world.free) == ["golden", "latest", PROTECTED, "staging"]
    s.remove_aliases(actor, free, [PROTECTED])
    assert world.aliases(world.free) == ["golden", "latest", "staging"]
    mine = world.make_version(actor, name="mine")
    assert s.link(actor, mine.membership_id, TARGET, [PROTECTED]).protected_aliases == [PROTECTED]


def test_role_table_admin_can_unlink_version_holding_protected_alias(world):
    s = world.service
    s.unlink(world.actor("admin"), world.held.membership_id)
    with pytest.raises(VersionNotFound):
        s.resolve(world.owner, f"{TARGET}:{PROTECTED}")
    assert s.get_collection(world.owner, REGISTRY, COLLECTION).version_count == 1


def test_role_table_admin_can_delete_collection_holding_protected_alias(world):
    s = world.service
    s.delete_collection(world.actor("admin"), REGISTRY, COLLECTION)
    with pytest.raises(CollectionNotFound):
        s.get_collection(world.owner, REGISTRY, COLLECTION)
    assert s.resolve(world.owner, f"{world.owner.name}/proj/zoo:v0")  # sources stay


# ======================================================================================
# Row 7: members and roles, visibility, accepted types, delete the registry
# ======================================================================================
def _assert_cannot_manage_registry(world: RoleWorld, actor: Actor) -> None:
    s = world.service
    new_actor(s, world.owner, "bystander")
    s.create_team(world.owner, "crew")
    before = world.snapshot()
    for attempt in (
        lambda: s.set_registry_role(actor, REGISTRY, user="bystander", role="viewer"),
        lambda: s.set_registry_role(actor, REGISTRY, team="crew", role="member"),
        lambda: s.set_registry_role(actor, REGISTRY, user=actor.name, role="admin"),
        lambda: s.set_registry_role(actor, REGISTRY, user=world.owner.name, role=None),
        lambda: s.update_registry(actor, REGISTRY, visibility="organization"),
        lambda: s.update_registry(actor, REGISTRY, artifact_types=["dataset"]),
        lambda: s.update_registry(actor, REGISTRY, clear_artifact_types=True),
        lambda: s.delete_registry(actor, REGISTRY),
    ):
        with pytest.raises(PermissionDenied) as exc:
            attempt()
        _denied(exc, "admin")
    assert world.snapshot() == before


def test_role_table_restricted_viewer_cannot_manage_members_roles_visibility_or_delete(world):
    """Nor change the accepted types."""
    _assert_cannot_manage_registry(world, world.actor("restricted_viewer"))


def test_role_table_viewer_cannot_manage_members_roles_visibility_or_delete(world):
    """Nor change the accepted types."""
    _assert_cannot_manage_registry(world, world.actor("viewer"))


def test_role_table_member_cannot_manage_members_roles_visibility_or_delete(world):
    """Nor change the accepted types."""
    _assert_cannot_manage_registry(world, world.actor("member"))


def test_role_table_admin_can_manage_members_roles_visibility_types_and_delete(world):
    s = world.service
    actor = world.actor("admin")
    newbie = new_actor(s, world.owner, "newbie")
    with pytest.raises(RegistryNotFound):
        s.get_registry(newbie, REGISTRY)

    s.set_registry_role(actor, REGISTRY, user="newbie", role="member")
    assert s.get_registry(newbie, REGISTRY).role == "member"
    s.set_registry_role(actor, REGISTRY, user="newbie", role=None)
    with pytest.raises(RegistryNotFound):
        s.get_registry(newbie, REGISTRY)

    assert s.update_registry(actor, REGISTRY, visibility="organization").visibility == (
        "organization"
    )
    assert s.get_registry(newbie, REGISTRY).role == "viewer"

    s.update_registry(actor, REGISTRY, artifact_types=["model"])
    data = world.make_version(actor, name="data", type="dataset")
    with pytest.raises(TypeMismatch):
        s.link(actor, data.membership_id, f"wandb-registry-{REGISTRY}/data")
    s.update_registry(actor, REGISTRY, clear_artifact_types=True)
    assert s.get_registry(actor, REGISTRY).artifact_types is None

    changes = [e for e in s.history(world.owner, REGISTRY).items if e.actor == actor.name]
    assert [e.action for e in changes].count("role_change") == 2

    s.delete_registry(actor, REGISTRY)
    with pytest.raises(RegistryNotFound):
        s.get_registry(world.owner, REGISTRY)
    assert REGISTRY not in {r.name for r in s.list_registries(world.owner)}


# ======================================================================================
# Effective roles: teams, org roles, the highest wins
# ======================================================================================
def test_role_given_to_a_team_applies_to_its_members(world):
    s = world.service
    _, key = s.create_user(world.owner, "tina")
    assert key is not None
    s.create_team(world.owner, "ml-team")
    s.add_team_member(world.owner, "ml-team", "tina")
    s.set_registry_role(world.owner, REGISTRY, team="ml-team", role="member")
    tina = s.authenticate(key)  # re-authenticate: teams are read at login
    assert tina.team_names == ("ml-team",)
    assert s.get_registry(tina, REGISTRY).role == "member"
    linked = s.link(tina, world.make_version(tina, name="t").membership_id, TARGET, ["tina"])
    assert linked.index == 2

    s.set_registry_role(world.owner, REGISTRY, team="ml-team", role=None)
    with pytest.raises(RegistryNotFound):
        s.get_registry(s.authenticate(key), REGISTRY)


@pytest.mark.parametrize(
    ("user_role", "team_role", "expected"),
    [
        ("viewer", "member", "member"),
        ("member", "viewer", "member"),
        ("restricted_viewer", "admin", "admin"),
        ("admin", "restricted_viewer", "admin"),
        (None, "viewer", "viewer"),
        ("viewer", None, "viewer"),
    ],
)
def test_effective_role_is_the_highest_of_user_and_team_roles(
    world, user_role, team_role, expected
):
    s = world.service
    _, key = s.create_user(world.owner, "hugo")
    assert key is not None
    s.create_team(world.owner, "hugos")
    s.add_team_member(world.owner, "hugos", "hugo")
    if user_role:
        s.set_registry_role(world.owner, REGISTRY, user="hugo", role=user_role)
    if team_role:
        s.set_registry_role(world.owner, REGISTRY, team="hugos", role=team_role)
    hugo = s.authenticate(key)
    assert s.get_registry(hugo, REGISTRY).role == expected
    can_link = allows(RegistryRole(expected), Permission.VERSION_LINK)
    mine = world.make_version(hugo, name="h")
    if can_link:
        s.link(hugo, mine.membership_id, TARGET)
    else:
        with pytest.raises(PermissionDenied):
            s.link(hugo, mine.membership_id, TARGET)


def test_org_role_implied_role_counts_in_the_highest(service, owner, world):
    """An org admin given only 'viewer' is still admin; in an organization-visible
    registry an org member given 'restricted_viewer' still has the implied 'viewer'."""
    boss = world.actor("viewer", name="boss", org_role="admin")
    assert service.get_registry(boss, REGISTRY).role == "admin"
    service.unlink(boss, world.held.membership_id)  # an admin-only action

    service.create_registry(owner, "Open")
    ann = new_actor(service, owner, "ann")
    service.set_registry_role(owner, "Open", user="ann", role="restricted_viewer")
    assert service.get_registry(ann, "Open").role == "viewer"
    service.set_registry_role(owner, "Open", user="ann", role="member")
    assert service.get_registry(ann, "Open").role == "member"


def test_org_admin_is_admin_of_every_registry(service, owner, make_version):
    """Even of a restricted registry someone else created and gave them no role in."""
    creator = new_actor(service, owner, "creator")
    service.create_registry(creator, "Secret", visibility="restricted")
    assert [m.name for m in service.registry_members(creator, "Secret")] == ["creator"]
    boss = new_actor(service, owner, "boss", org_role="admin")

    for actor in (owner, boss):
        assert service.get_registry(actor, "Secret").role == "admin"
        assert "Secret" in {r.name for r in service.list_registries(actor)}
    v = make_version(creator)
    link = service.link(creator, v.membership_id, "wandb-registry-Secret/c", ["prod"])
    service.protect_alias(boss, "Secret", "prod")
    service.set_registry_role(boss, "Secret", user="creator", role="member")
    with pytest.raises(PermissionDenied):
        service.unlink(creator, link.membership_id)
    service.unlink(boss, link.membership_id)
    service.update_registry(boss, "Secret", visibility="organization")
    service.delete_registry(boss, "Secret")
    with pytest.raises(RegistryNotFound):
        service.get_registry(owner, "Secret")


def test_organization_visible_registry_lets_every_org_member_view(service, owner, make_version):
    service.create_registry(owner, "Open")  # visibility defaults to organization
    link = service.link(owner, make_version(owner).membership_id, "wandb-registry-Open/c", ["best"])
    for org_role in ("viewer", "member"):
        actor = new_actor(service, owner, f"org-{org_role}", org_role=org_role)
        assert "Open" in {r.name for r in service.list_registries(actor)}
        assert service.get_registry(actor, "Open").role == "viewer"
        assert service.resolve(actor, "wandb-registry-Open/c:best").index == 0
        assert service.history(actor, "Open").items
        assert service.files(actor, link.membership_id)
        with pytest.raises(PermissionDenied) as exc:
            service.add_aliases(actor, link.membership_id, ["mine"])
        _denied(exc, "member")
    # the core registries are organization-visible too
    assert {"model", "dataset"} <= {r.name for r in service.list_registries(actor)}


def test_restricted_registry_is_not_found_for_non_members_like_a_missing_one(world):
    s = world.service
    outsider = new_actor(s, world.owner, "outsider")
    org_viewer = new_actor(s, world.owner, "watcher", org_role="viewer")
    for actor in (outsider, org_viewer):
        assert REGISTRY not in {r.name for r in s.list_registries(actor)}
        calls = {
            "get_registry": lambda a, name: s.get_registry(a, name),
            "get_collection": lambda a, name: s.get_collection(a, name, COLLECTION),
            "resolve": lambda a, name: s.resolve(a, f"wandb-registry-{name}/{COLLECTION}"),
            "history": lambda a, name: s.history(a, name),
            "members": lambda a, name: s.registry_members(a, name),
            "protect": lambda a, name: s.protect_alias(a, name, "x"),
        }
        for what, call in calls.items():
            with pytest.raises(RegistryNotFound) as hidden:
                call(actor, REGISTRY)
            with pytest.raises(RegistryNotFound) as missing:
                call(actor, "Nope")
            assert str(hidden.value).replace(REGISTRY, "?") == str(missing.value).replace(
                "Nope", "?"
            ), what
            assert hidden.value.details == {"registry": REGISTRY}, what
        mine = world.make_version(actor, name="mine")
        with pytest.raises(RegistryNotFound):
            s.link(actor, mine.membership_id, TARGET)
        for call in (s.get_version, s.files):
            with pytest.raises(VersionNotFound):
                call(actor, world.held.membership_id)
        with pytest.raises(VersionNotFound):
            s.add_aliases(actor, world.free.membership_id, ["x"])


# ======================================================================================
# Creating registries, service accounts
# ======================================================================================
def test_creating_a_registry_needs_org_member_or_admin(service, owner):
    watcher = new_actor(service, owner, "watcher", org_role="viewer")
    before = {r.name for r in service.list_registries(owner)}
    with pytest.raises(PermissionDenied) as exc:
        service.create_registry(watcher, "Mine")
    _denied(exc, "member")
    assert {r.name for r in service.list_registries(owner)} == before

    member = new_actor(service, owner, "maker", org_role="member")
    assert service.create_registry(member, "Mine").name == "Mine"
    assert service.create_registry(owner, "Theirs").name == "Theirs"


def test_registry_creator_becomes_its_admin(service, owner, make_version):
    maker = new_actor(service, owner, "maker")
    reg = service.create_registry(maker, "Mine", visibility="restricted")
    assert reg.role == "admin"
    members = service.registry_members(maker, "Mine")
    assert [(m.kind, m.name, m.role) for m in members] == [("user", "maker", "admin")]
    new_actor(service, owner, "pal")
    service.set_registry_role(maker, "Mine", user="pal", role="viewer")
    service.protect_alias(maker, "Mine", "prod")
    link = service.link(maker, make_version(maker).membership_id, "wandb-registry-Mine/c", ["prod"])
    service.unlink(maker, link.membership_id)
    service.delete_registry(maker, "Mine")


def test_service_accounts_can_be_only_member_or_admin(world):
    s, o = world.service, world.owner
    users_before = [u.name for u in s.list_users(o)]
    with pytest.raises(InvalidRequest):
        s.create_user(o, "bot-viewer", org_role="viewer", service_account=True)
    assert [u.name for u in s.list_users(o)] == users_before

    bot = new_actor(s, o, "bot", service_account=True)
    assert bot.kind == "service"
    with pytest.raises(InvalidRequest):
        s.set_org_role(o, "bot", "viewer")
    before = world.snapshot()
    for role in ("viewer", "restricted_viewer"):
        with pytest.raises(InvalidRequest):
            s.set_registry_role(o, REGISTRY, user="bot", role=role)
    assert world.snapshot() == before
    assert s.authenticate(s.create_api_key(o, "bot")).org_role == "member"

    for role in ("member", "admin"):
        s.set_registry_role(o, REGISTRY, user="bot", role=role)
        assert s.get_registry(bot, REGISTRY).role == role
    admin_bot = new_actor(s, o, "admin-bot", org_role="admin", service_account=True)
    assert admin_bot.is_org_admin


# ======================================================================================
# R7 and deleting source versions; source artifacts; linking
# ======================================================================================
def test_nobody_can_delete_a_source_version_while_a_link_holds_a_protected_alias(world):
    """Not its own user (the owner, an org admin, so admin of Prod), not another org admin."""
    s, o = world.service, world.owner
    source = s.source_of(o, world.held.membership_id)
    boss = world.actor("admin", name="boss", org_role="admin")
    for actor in (o, boss):
        with pytest.raises(ProtectedAlias) as exc:
            s.delete_version(actor, source.membership_id)
        assert exc.value.details["aliases"] == [PROTECTED]
    assert s.resolve(o, f"{o.name}/proj/zoo:v0").index == 0
    assert world.aliases(world.held) == [PROTECTED]

    s.remove_aliases(boss, world.held.membership_id, [PROTECTED])
    s.delete_version(o, source.membership_id)
    with pytest.raises(VersionNotFound):
        s.resolve(o, f"{o.name}/proj/zoo:v0")
    with pytest.raises(VersionNotFound):
        s.resolve(o, f"{TARGET}:v0")


def test_source_version_owner_cannot_delete_it_while_a_link_holds_a_protected_alias(world):
    """Even when they are an admin of the registry holding the protected alias."""
    s = world.service
    alice = world.actor("admin", name="alice")
    mine = world.make_version(alice, name="mine")
    s.link(alice, mine.membership_id, TARGET, [PROTECTED])
    with pytest.raises(ProtectedAlias) as exc:
        s.delete_version(alice, mine.membership_id)
    assert exc.value.details["aliases"] == [PROTECTED]
    assert s.resolve(alice, "alice/proj/mine:v0")
    assert s.resolve(world.owner, f"{TARGET}:{PROTECTED}").source_name == "mine"


def test_user_may_log_into_their_own_entity_and_their_teams(service, owner, make_version):
    _, key = service.create_user(owner, "alice")
    assert key is not None
    service.create_team(owner, "vision")
    service.add_team_member(owner, "vision", "alice")
    alice = service.authenticate(key)
    assert make_version(alice).source_entity == "alice"
    assert make_version(alice, entity="vision").source_entity == "vision"
    service.start_run(alice, "vision", "proj", "run-alice")


def test_user_may_not_log_into_another_entity(service, owner, make_version):
    alice = new_actor(service, owner, "alice")
    new_actor(service, owner, "bob")
    service.create_team(owner, "others")
    for entity in ("bob", "others", owner.name):
        with pytest.raises(PermissionDenied) as exc:
            make_version(alice, entity=entity, name="sneaky")
        assert exc.value.details["entity"] == entity
        with pytest.raises(ArtifactNotFound):
            service.resolve(owner, f"{entity}/proj/sneaky")
        with pytest.raises(PermissionDenied):
            service.start_run(alice, entity, "proj", f"run-{entity}")


def test_org_admin_may_log_into_any_entity(service, owner, make_version):
    new_actor(service, owner, "bob")
    boss = new_actor(service, owner, "boss", org_role="admin")
    for actor in (owner, boss):
        v = make_version(actor, entity="bob", name=f"by-{actor.name}")
        assert v.source_entity == "bob"
    assert service.resolve(owner, "bob/proj/by-boss").created_by == "boss"


def test_linking_needs_member_in_the_target_registry(world):
    s = world.service
    # member in one registry, viewer in another: links only into the first
    s.create_registry(world.owner, "Other", visibility="restricted")
    actor = world.actor("member")
    s.set_registry_role(world.owner, "Other", user=actor.name, role="viewer")
    mine = world.make_version(actor, name="mine")
    assert s.link(actor, mine.membership_id, TARGET).index == 2
    with pytest.raises(PermissionDenied) as exc:
        s.link(actor, mine.membership_id, "wandb-registry-Other/c")
    _denied(exc, "member")
    with pytest.raises(CollectionNotFound):
        s.get_collection(world.owner, "Other", "c")


def test_linking_needs_read_access_to_the_source_version(world):
    s = world.service
    actor = world.actor("member")
    # another user's source is invisible: 404, nothing linked
    bob = new_actor(s, world.owner, "bob")
    bobs = world.make_version(bob, name="bobs")
    before = world.snapshot()
    with pytest.raises(VersionNotFound):
        s.link(actor, bobs.membership_id, TARGET)
    # a link in a registry where the actor may not download cannot be re-linked
    s.create_registry(world.owner, "Stage", visibility="restricted")
    staged = s.link(world.owner, world.held.membership_id, "wandb-registry-Stage/c")
    s.set_registry_role(world.owner, "Stage", user=actor.name, role="restricted_viewer")
    with pytest.raises(PermissionDenied) as exc:
        s.link(actor, staged.membership_id, f"wandb-registry-{REGISTRY}/copy")
    _denied(exc, "viewer")
    assert world.snapshot() == before
    with pytest.raises(CollectionNotFound):
        s.get_collection(world.owner, REGISTRY, "copy")
    # with viewer there, it may
    s.set_registry_role(world.owner, "Stage", user=actor.name, role="viewer")
    assert s.link(actor, staged.membership_id, f"wandb-registry-{REGISTRY}/copy").index == 0


def test_every_role_in_the_table_is_known_to_the_vocabulary():
    assert tuple(r.value for r in sorted(RegistryRole, key=lambda r: r.rank)) == ROLES
