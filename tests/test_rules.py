"""SPEC §3 registry rules R1-R11, each tested by name, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from regalia.errors import (
    AliasNotFound,
    InvalidName,
    PermissionDenied,
    ProtectedAlias,
    TypeMismatch,
    VersionNotFound,
)

TARGET = "wandb-registry-model/zoo"


def _aliases(service, actor, path):
    return service.resolve(actor, path).aliases


# -- R1 Link ---------------------------------------------------------------------------
def test_r1_link_creates_the_collection_with_the_artifact_type(service, owner, make_version):
    v = make_version(owner, type="dataset")
    linked = service.link(owner, v.membership_id, "wandb-registry-model/new_coll")
    assert linked.collection.name == "new_coll"
    assert linked.collection.type == "dataset"
    assert service.get_collection(owner, "model", "new_coll").type == "dataset"


def test_r1_link_of_another_type_than_the_collection_is_an_error(service, owner, make_version):
    service.link(owner, make_version(owner, name="m", type="model").membership_id, TARGET)
    other = make_version(owner, name="d", type="dataset")
    with pytest.raises(TypeMismatch, match="type 'model'"):
        service.link(owner, other.membership_id, TARGET)
    assert service.get_collection(owner, "model", "zoo").version_count == 1


def test_r1_registry_refuses_types_it_does_not_accept(service, owner, make_version):
    service.create_registry(owner, "Vision", artifact_types=["model"])
    v = make_version(owner, type="dataset")
    with pytest.raises(TypeMismatch, match="accepts artifact types"):
        service.link(owner, v.membership_id, "wandb-registry-Vision/c")
    assert service.get_registry(owner, "vision").collection_count == 0


def test_r1_core_registries_accept_every_type(service, owner, make_version):
    for reg in ("model", "dataset"):
        for typ in ("dataset", "model", "anything-else"):
            v = make_version(owner, name=f"n-{typ}", type=typ)
            linked = service.link(owner, v.membership_id, f"wandb-registry-{reg}/c-{typ}")
            assert linked.type == typ


# -- R2 Index ----------------------------------------------------------------------------
def test_r2_indices_follow_link_order_not_source_numbers(service, owner, make_version):
    versions = [make_version(owner) for _ in range(3)]  # source v0, v1, v2
    for v in reversed(versions):
        service.link(owner, v.membership_id, TARGET)
    got = {service.resolve(owner, f"{TARGET}:v{i}").source_index for i in range(3)}
    assert service.resolve(owner, f"{TARGET}:v0").source_index == 2
    assert got == {0, 1, 2}


def test_r2_indices_are_never_reused_after_unlink(service, owner, make_version):
    a, b = make_version(owner), make_version(owner)
    la = service.link(owner, a.membership_id, TARGET)
    lb = service.link(owner, b.membership_id, TARGET)
    service.unlink(owner, lb.membership_id)
    c = service.link(owner, make_version(owner).membership_id, TARGET)
    assert (la.index, lb.index, c.index) == (0, 1, 2)
    with pytest.raises(VersionNotFound):
        service.resolve(owner, f"{TARGET}:v1")


# -- R3 Re-link --------------------------------------------------------------------------
def test_r3_relink_returns_the_existing_link_and_applies_new_aliases(service, owner, make_version):
    v = make_version(owner)
    first = service.link(owner, v.membership_id, TARGET, ["a"])
    again = service.link(owner, v.membership_id, TARGET, ["b"])
    assert again.membership_id == first.membership_id and again.index == 0
    assert again.created is False
    assert set(again.aliases) == {"latest", "a", "b"}
    assert service.get_collection(owner, "model", "zoo").version_count == 1


# -- R4 latest ---------------------------------------------------------------------------
def test_r4_latest_moves_on_link(service, owner, make_version):
    service.link(owner, make_version(owner).membership_id, TARGET)
    second = service.link(owner, make_version(owner).membership_id, TARGET)
    assert service.resolve(owner, TARGET).index == second.index == 1
    assert "latest" not in service.resolve(owner, f"{TARGET}:v0").aliases


def test_r4_latest_moves_back_on_unlink(service, owner, make_version):
    links = [service.link(owner, make_version(owner).membership_id, TARGET) for _ in range(3)]
    service.unlink(owner, links[2].membership_id)
    assert service.resolve(owner, f"{TARGET}:latest").index == 1
    service.unlink(owner, links[0].membership_id)
    assert service.resolve(owner, f"{TARGET}:latest").index == 1
    service.unlink(owner, links[1].membership_id)
    with pytest.raises(VersionNotFound):
        service.resolve(owner, f"{TARGET}:latest")


def test_r4_latest_cannot_be_set_by_hand(service, owner, make_version):
    a = service.link(owner, make_version(owner).membership_id, TARGET)
    service.link(owner, make_version(owner).membership_id, TARGET)
    with pytest.raises(InvalidName, match="managed by the registry"):
        service.add_aliases(owner, a.membership_id, ["latest"])
    assert service.resolve(owner, TARGET).index == 1


# -- R5 unique aliases ---------------------------------------------------------------------
def test_r5_adding_a_held_alias_moves_it(service, owner, make_version):
    a = service.link(owner, make_version(owner).membership_id, TARGET, ["prod"])
    b = service.link(owner, make_version(owner).membership_id, TARGET)
    service.add_aliases(owner, b.membership_id, ["prod"])
    assert service.resolve(owner, f"{TARGET}:prod").index == b.index
    assert "prod" not in service.get_version(owner, a.membership_id).aliases


def test_r5_aliases_are_unique_ignoring_case(service, owner, make_version):
    service.link(owner, make_version(owner).membership_id, TARGET, ["Prod"])
    b = service.link(owner, make_version(owner).membership_id, TARGET)
    service.add_aliases(owner, b.membership_id, ["PROD"])
    assert service.resolve(owner, f"{TARGET}:prod").index == 1
    assert service.get_version(owner, b.membership_id).aliases == ["latest", "PROD"]
    assert (
        service.get_version(owner, service.resolve(owner, f"{TARGET}:v0").membership_id).aliases
        == []
    )


def test_r5_removing_an_alias_the_version_does_not_hold_is_an_error(service, owner, make_version):
    a = service.link(owner, make_version(owner).membership_id, TARGET, ["prod"])
    b = service.link(owner, make_version(owner).membership_id, TARGET)
    with pytest.raises(AliasNotFound):
        service.remove_aliases(owner, b.membership_id, ["prod"])
    assert service.resolve(owner, f"{TARGET}:prod").index == a.index


# -- R6 aliases belong to a membership -------------------------------------------------------
def test_r6_same_alias_in_two_collections_or_registries_is_unrelated(service, owner, make_version):
    service.create_registry(owner, "Vision")
    a, b, c = make_version(owner), make_version(owner), make_version(owner)
    service.link(owner, a.membership_id, TARGET, ["prod"])
    service.link(owner, b.membership_id, "wandb-registry-model/other", ["prod"])
    service.link(owner, c.membership_id, "wandb-registry-Vision/zoo", ["prod"])
    assert service.resolve(owner, f"{TARGET}:prod").version_id == a.version_id
    assert service.resolve(owner, "wandb-registry-model/other:prod").version_id == b.version_id
    assert service.resolve(owner, "wandb-registry-vision/zoo:prod").version_id == c.version_id


# -- R7 protected aliases --------------------------------------------------------------------
@pytest.fixture
def member(service, owner):
    _, key = service.create_user(owner, "mia", org_role="member")
    service.set_registry_role(owner, "model", user="mia", role="member")
    return service.authenticate(key)


def test_r7_admin_manages_the_protected_list(service, owner):
    assert service.protect_alias(owner, "model", "production") == ["production"]
    assert service.get_registry(owner, "model").protected_aliases == ["production"]
    assert service.unprotect_alias(owner, "model", "production") == []


def test_r7_member_cannot_add_move_or_remove_a_protected_alias(
    service, owner, member, make_version
):
    service.protect_alias(owner, "model", "production")
    a = service.link(owner, make_version(owner).membership_id, TARGET, ["production"])
    b = service.link(member, make_version(member).membership_id, TARGET)
    with pytest.raises(PermissionDenied) as err:
        service.add_aliases(member, b.membership_id, ["production"])
    assert err.value.details["required_role"] == "admin"
    with pytest.raises(PermissionDenied):
        service.remove_aliases(member, a.membership_id, ["production"])
    with pytest.raises(PermissionDenied):
        service.link(member, make_version(member).membership_id, TARGET, ["production"])
    assert service.resolve(owner, f"{TARGET}:production").index == a.index
    assert service.get_collection(owner, "model", "zoo").version_count == 2


def test_r7_admin_moves_a_protected_alias(service, owner, make_version):
    service.protect_alias(owner, "model", "production")
    service.link(owner, make_version(owner).membership_id, TARGET, ["production"])
    b = service.link(owner, make_version(owner).membership_id, TARGET)
    moved = service.add_aliases(owner, b.membership_id, ["production"])
    assert moved.protected_aliases == ["production"]


def test_r7_member_cannot_unlink_or_delete_what_holds_a_protected_alias(
    service, owner, member, make_version
):
    service.protect_alias(owner, "model", "production")
    a = service.link(owner, make_version(owner).membership_id, TARGET, ["production"])
    with pytest.raises(PermissionDenied):
        service.unlink(member, a.membership_id)
    with pytest.raises(PermissionDenied):
        service.delete_collection(member, "model", "zoo")
    assert service.resolve(owner, f"{TARGET}:production").index == 0


def test_r7_nobody_deletes_a_source_version_whose_link_holds_a_protected_alias(
    service, owner, make_version
):
    service.protect_alias(owner, "model", "production")
    v = make_version(owner)
    service.link(owner, v.membership_id, TARGET, ["production"])
    with pytest.raises(ProtectedAlias, match="protected alias"):
        service.delete_version(owner, v.membership_id)
    assert service.resolve(owner, f"{TARGET}:production").version_id == v.version_id


# -- R8 tags, description, metadata belong to the version -------------------------------------
def test_r8_editing_through_a_link_changes_the_source_and_every_link(service, owner, make_version):
    v = make_version(owner)
    l1 = service.link(owner, v.membership_id, TARGET)
    l2 = service.link(owner, v.membership_id, "wandb-registry-dataset/copy")
    service.update_version(
        owner,
        l1.membership_id,
        description="best so far",
        metadata={"acc": 0.9},
        add_tags=["vision"],
    )
    for mid in (v.membership_id, l2.membership_id):
        got = service.get_version(owner, mid)
        assert (got.description, got.metadata, got.tags) == (
            "best so far",
            {"acc": 0.9},
            ["vision"],
        )


# -- R9 unlink and delete ---------------------------------------------------------------------
def test_r9_unlink_keeps_the_source_version(service, owner, make_version):
    v = make_version(owner)
    link = service.link(owner, v.membership_id, TARGET)
    service.unlink(owner, link.membership_id)
    assert service.resolve(owner, f"{owner.name}/proj/zoo:v0").version_id == v.version_id


def test_r9_delete_unlinks_everywhere_and_frees_unreferenced_files(
    service, owner, make_version, clock
):
    v = make_version(owner, b"unique bytes")
    keep = make_version(owner, b"shared bytes", name="other")
    service.link(owner, v.membership_id, TARGET)
    service.link(owner, v.membership_id, "wandb-registry-dataset/zoo")
    digest = service.files(owner, v.membership_id)[0].digest
    assert service.blobs.has(digest)
    service.delete_version(owner, v.membership_id)
    for path in (TARGET, "wandb-registry-dataset/zoo", f"{owner.name}/proj/zoo"):
        with pytest.raises(VersionNotFound):
            service.resolve(owner, path)
    # Freed by garbage collection once its grace period has passed (service/gc.py).
    assert service.blobs.has(digest)
    clock.advance(days=2)
    for info in service.blobs.iter_blobs():
        when = (clock.now - timedelta(days=1, hours=1)).timestamp()
        os.utime(service.blobs.path(info.digest), (when, when))
    assert service.collect_garbage(owner, grace=timedelta(days=1)).freed == [digest]
    assert not service.blobs.has(digest)
    assert service.blobs.has(service.files(owner, keep.membership_id)[0].digest)


def test_r9_files_shared_with_another_version_survive_delete(service, owner, make_version):
    a = make_version(owner, b"same", name="a")
    b = make_version(owner, b"same", name="b")
    digest = service.files(owner, a.membership_id)[0].digest
    service.delete_version(owner, a.membership_id)
    assert service.blobs.has(digest)
    assert service.files(owner, b.membership_id)[0].digest == digest


# -- R10 identical content -------------------------------------------------------------------
def test_r10_identical_content_returns_the_existing_version(service, owner, make_version):
    first = make_version(owner, b"weights")
    again = make_version(owner, b"weights")
    assert again.version_id == first.version_id and again.index == 0
    assert (first.created, again.created) == (True, False)
    third = make_version(owner, b"other weights")
    assert third.index == 1


# -- R11 history -----------------------------------------------------------------------------
def test_r11_every_change_is_recorded_with_actor_and_time(service, owner, member, make_version):
    a = service.link(owner, make_version(owner).membership_id, TARGET, ["staging"])
    b = service.link(member, make_version(member).membership_id, TARGET)
    service.add_aliases(member, b.membership_id, ["staging"])
    service.update_version(member, b.membership_id, add_tags=["good"])
    service.remove_aliases(member, b.membership_id, ["staging"])
    service.unlink(owner, a.membership_id)
    service.protect_alias(owner, "model", "production")
    service.set_registry_role(owner, "model", user="mia", role="admin")
    entries = service.history(owner, "model", limit=1000).items
    seen = [(e.action, e.actor, e.alias, e.version_index) for e in reversed(entries)]
    for expected in [
        ("link", owner.name, None, 0),
        ("alias_add", owner.name, "staging", 0),
        ("link", "mia", None, 1),
        ("alias_add", "mia", "staging", 1),
        ("tag_add", "mia", None, 1),
        ("alias_remove", "mia", "staging", 1),
        ("unlink", owner.name, None, 0),
        ("protected_alias_add", owner.name, "production", None),
        ("role_change", owner.name, None, None),
    ]:
        assert expected in seen, expected
    assert all(e.created_at.tzinfo is not None for e in entries)


def test_r11_which_version_held_an_alias_on_a_date(service, owner, make_version, clock):
    a = service.link(owner, make_version(owner).membership_id, TARGET, ["production"])
    t1 = clock.now
    clock.advance(days=1)
    b = service.link(owner, make_version(owner).membership_id, TARGET)
    service.add_aliases(owner, b.membership_id, ["production"])
    t2 = clock.now
    clock.advance(days=1)
    service.remove_aliases(owner, b.membership_id, ["production"])
    t3 = clock.now
    assert service.alias_at(owner, "model", "zoo", "production", t1 - timedelta(days=1)) is None
    assert service.alias_at(owner, "model", "zoo", "production", t1) == a.index
    assert service.alias_at(owner, "model", "zoo", "production", t2) == b.index
    assert service.alias_at(owner, "model", "zoo", "production", t3) is None


def test_r9_deleting_a_source_needs_unlink_rights_where_it_is_linked(service, owner, make_version):
    _, key = service.create_user(owner, "dana", org_role="member")
    dana = service.authenticate(key)
    v = make_version(dana)
    service.create_registry(owner, "Prod", visibility="restricted")
    service.set_registry_role(owner, "Prod", user="dana", role="member")
    service.link(dana, v.membership_id, "wandb-registry-Prod/zoo")
    service.set_registry_role(owner, "Prod", user="dana", role="viewer")
    with pytest.raises(PermissionDenied):
        service.delete_version(dana, v.membership_id)
    assert service.resolve(owner, "wandb-registry-Prod/zoo:latest").version_id == v.version_id
