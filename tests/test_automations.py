"""SPEC §5 in the service: automations and the deliveries each change queues in
its own transaction (the outbox), on SQLite and PostgreSQL. Sending them is
the worker's job (tested with real receivers elsewhere)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from regalia.errors import (
    AlreadyExists,
    AutomationNotFound,
    InvalidRequest,
    PermissionDenied,
    ProtectedAlias,
    RegistryNotFound,
)
from regalia.store.models import Automation, Delivery

HOOK = "http://127.0.0.1:9/hook"
SLACK = "http://127.0.0.1:9/services/T000/B000/XXXXSECRETPATH"


@pytest.fixture
def settings(settings):
    """Receivers in these tests live on loopback."""
    return dataclasses.replace(settings, automation_allow_private=True)


def deliveries(service, actor, automation_id):
    return list(reversed(service.deliveries(actor, automation_id)))


def member(service, owner, name, role="member", registry="model"):
    view, key = service.create_user(owner, name)
    service.set_registry_role(owner, registry, user=name, role=role)
    return service.authenticate(key)


def test_an_alias_added_queues_a_delivery_with_the_event_variables(service, owner, make_version):
    auto = service.create_automation(
        owner, registry="model", name="to-prod", event="ADD_ARTIFACT_ALIAS", action="webhook",
        target=HOOK, filter_kind="alias_regex", filter_value="^prod",
    )  # fmt: skip
    v = make_version(owner, metadata={"acc": 0.9})
    link = service.link(owner, v.membership_id, "wandb-registry-model/zoo", aliases=["staging"])
    assert deliveries(service, owner, auto.id) == []  # latest and staging do not match ^prod
    service.add_aliases(owner, link.membership_id, ["production-us"])
    [d] = deliveries(service, owner, auto.id)
    assert (d.event, d.status, d.attempts, d.is_test) == ("ADD_ARTIFACT_ALIAS", "pending", 0, False)
    with service.db.engine.connect() as conn:
        variables = conn.execute(
            select(Delivery.variables).where(Delivery.automation_id == auto.id)
        ).scalar_one()
    assert variables == {
        "event_type": "ADD_ARTIFACT_ALIAS",
        "event_author": owner.name,
        "alias": "production-us",
        "tag": None,
        "registry_name": "model",
        "artifact_collection_name": "zoo",
        "artifact_collection_type": "model",
        "artifact_version": "v0",
        "artifact_version_string": "wandb-registry-model/zoo:v0",
        "entity_name": owner.name,
        "project_name": "proj",
        "source_artifact": f"{owner.name}/proj/zoo",
        "artifact_metadata": {"acc": 0.9},
    }


def test_each_event_kind_and_its_filter(service, owner, make_version):
    def make(name, event, kind=None, value=None):
        return service.create_automation(
            owner, registry="model", name=name, event=event, action="webhook", target=HOOK,
            filter_kind=kind, filter_value=value,
        ).id  # fmt: skip

    linked = make("linked", "LINK_ARTIFACT")
    linked_staging = make("linked-staging", "LINK_ARTIFACT", "alias", "staging")
    removed = make("removed", "REMOVE_ARTIFACT_ALIAS", "alias_regex", "^stag")
    unlinked = make("unlinked", "UNLINK_ARTIFACT")
    gold = make("gold", "ADD_ARTIFACT_TAG", "tag_regex", "^gold$")
    a = service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo",
                     aliases=["staging"])  # fmt: skip
    b = service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    service.remove_aliases(owner, a.membership_id, ["staging"])
    service.update_version(owner, b.membership_id, add_tags=["golden", "gold"])
    service.unlink(owner, b.membership_id)
    counts = {i: len(deliveries(service, owner, i)) for i in (linked, linked_staging, removed,
                                                              unlinked, gold)}  # fmt: skip
    assert counts == {linked: 2, linked_staging: 1, removed: 1, unlinked: 1, gold: 1}


def test_a_tag_added_through_the_source_artifact_fires_for_its_registry_version(
    service, owner, make_version
):
    gold = service.create_automation(owner, registry="model", name="gold", action="webhook",
                                     event="ADD_ARTIFACT_TAG", target=HOOK)  # fmt: skip
    source = make_version(owner)
    service.link(owner, source.membership_id, "wandb-registry-model/zoo")
    service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    service.update_version(owner, source.membership_id, add_tags=["gold"])  # on the source
    [d] = deliveries(service, owner, gold.id)
    with service.db.engine.connect() as conn:
        variables = conn.execute(
            select(Delivery.variables).where(Delivery.public_id == d.id)
        ).scalar_one()
    assert (variables["tag"], variables["artifact_version_string"]) == (
        "gold", "wandb-registry-model/zoo:v0")  # fmt: skip


def test_moving_a_protected_alias_fires_alias_added_for_the_new_version(
    service, owner, make_version
):
    service.protect_alias(owner, "model", "production")
    auto = service.create_automation(
        owner, registry="model", name="prod", event="ADD_ARTIFACT_ALIAS", action="webhook",
        target=HOOK, filter_kind="alias_regex", filter_value="^production$",
    ).id  # fmt: skip
    v0 = service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    v1 = service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    service.add_aliases(owner, v0.membership_id, ["production"])
    service.add_aliases(owner, v1.membership_id, ["production"])  # moved by an admin
    sent = deliveries(service, owner, auto)
    assert len(sent) == 2
    with service.db.engine.connect() as conn:
        versions = conn.execute(
            select(Delivery.variables).where(Delivery.automation_id == auto).order_by(Delivery.id)
        ).scalars().all()  # fmt: skip
    assert [v["artifact_version"] for v in versions] == ["v0", "v1"]


def test_a_refused_change_queues_nothing(service, owner, make_version):
    service.protect_alias(owner, "model", "production")
    auto = service.create_automation(
        owner, registry="model", name="any-alias", event="ADD_ARTIFACT_ALIAS", action="webhook",
        target=HOOK,
    ).id  # fmt: skip
    link = service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    before = len(deliveries(service, owner, auto))
    bob = member(service, owner, "bob")
    with pytest.raises((ProtectedAlias, PermissionDenied)):
        service.add_aliases(bob, link.membership_id, ["staging", "production"])
    assert len(deliveries(service, owner, auto)) == before  # not even for staging


def test_scopes_disabled_automations_and_later_collections(service, owner, make_version):
    whole = service.create_automation(
        owner, registry="model", name="whole", event="LINK_ARTIFACT", action="webhook",
        target=HOOK,
    ).id  # fmt: skip
    service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    one = service.create_automation(
        owner, registry="model", name="only-zoo", collection="zoo", event="LINK_ARTIFACT",
        action="webhook", target=HOOK,
    ).id  # fmt: skip
    off = service.create_automation(
        owner, registry="model", name="off", event="LINK_ARTIFACT", action="webhook",
        target=HOOK, enabled=False,
    ).id  # fmt: skip
    service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    # A collection created after the automations: the registry-wide one fires.
    service.link(owner, make_version(owner).membership_id, "wandb-registry-model/later")
    service.create_registry(owner, "vision")
    service.link(owner, make_version(owner).membership_id, "wandb-registry-vision/zoo")
    assert len(deliveries(service, owner, whole)) == 3
    assert len(deliveries(service, owner, one)) == 1
    assert deliveries(service, owner, off) == []
    service.set_automation_enabled(owner, off, True)
    service.link(owner, make_version(owner).membership_id, "wandb-registry-model/zoo")
    assert len(deliveries(service, owner, off)) == 1


def test_roles_members_create_viewers_see_outsiders_get_404(service, owner):
    viewer = member(service, owner, "vera", role="viewer")
    with pytest.raises(PermissionDenied, match="member"):
        service.create_automation(viewer, registry="model", name="x", event="LINK_ARTIFACT",
                                  action="webhook", target=HOOK)  # fmt: skip
    bob = member(service, owner, "bob")
    auto = service.create_automation(bob, registry="model", name="x", event="LINK_ARTIFACT",
                                     action="webhook", target=HOOK)  # fmt: skip
    assert [a.name for a in service.automations(viewer, "model")] == ["x"]
    with pytest.raises(PermissionDenied):
        service.delete_automation(viewer, auto.id)
    service.create_registry(owner, "secret", visibility="restricted")
    hidden = service.create_automation(
        owner, registry="secret", name="y", event="LINK_ARTIFACT", action="webhook", target=HOOK
    )
    with pytest.raises(RegistryNotFound):
        service.automations(bob, "secret")
    with pytest.raises(AutomationNotFound):
        service.deliveries(bob, hidden.id)
    service.delete_automation(bob, auto.id)
    assert service.automations(owner, "model") == []


def test_secrets_are_stored_encrypted_and_never_shown(service, owner):
    auto = service.create_automation(
        owner, registry="model", name="ci", event="ADD_ARTIFACT_ALIAS", action="webhook",
        target=HOOK, access_token="tok-123", signing_secret="sign-456",
        secrets={"DEPLOY_KEY": "key-789"},
        payload_template='{"key": "${DEPLOY_KEY}", "auth": "${ACCESS_TOKEN}", "v": "${alias}"}',
    )  # fmt: skip
    assert auto.has_access_token and auto.has_signing_secret
    assert auto.secret_names == ["DEPLOY_KEY"]
    slack = service.create_automation(
        owner, registry="model", name="chat", event="LINK_ARTIFACT", action="slack", target=SLACK
    )
    assert slack.target == "http://127.0.0.1:9/…"  # the URL's path is the Slack secret
    with service.db.engine.connect() as conn:
        rows = conn.execute(select(Automation).where(Automation.org_id == owner.org_id))
        stored = " ".join(str(v) for row in rows for v in row)
    for plain in ("tok-123", "sign-456", "key-789", "XXXXSECRETPATH"):
        assert plain not in stored
        assert plain not in repr(service.automations(owner, "model"))


def test_bad_automations_are_refused_with_a_reason(service, owner, settings):
    def create(**kw):
        args = {"registry": "model", "name": "bad", "event": "LINK_ARTIFACT",
                "action": "webhook", "target": HOOK} | kw  # fmt: skip
        return service.create_automation(owner, **args)

    with pytest.raises(InvalidRequest, match="unknown event"):
        create(event="ALIAS_ADDED")
    with pytest.raises(InvalidRequest, match="unknown action"):
        create(action="email")
    with pytest.raises(InvalidRequest, match="takes only 'alias'"):
        create(filter_kind="tag_regex", filter_value="x")
    with pytest.raises(InvalidRequest, match=r"unknown variable \$\{SECRET\}"):
        create(payload_template='{"s": "${SECRET}"}')
    with pytest.raises(InvalidRequest, match="Slack action takes only"):
        create(action="slack", access_token="t")
    with pytest.raises(InvalidRequest, match="invalid secret name"):
        create(secrets={"lower": "x"})
    create(name="ok")
    with pytest.raises(AlreadyExists):
        create(name="OK")
    strict = dataclasses.replace(settings, automation_allow_private=False)
    service.settings = strict
    with pytest.raises(InvalidRequest, match="REGALIA_AUTOMATION_ALLOW_PRIVATE"):
        create(name="loopback")


def test_test_and_redeliver_queue_new_deliveries(service, owner):
    auto = service.create_automation(
        owner, registry="model", name="t", event="ADD_ARTIFACT_ALIAS", action="webhook",
        target=HOOK, filter_kind="alias_regex", filter_value="^prod", enabled=False,
    ).id  # fmt: skip
    sample = service.test_automation(owner, auto)
    assert sample.is_test and sample.status == "pending"
    again = service.redeliver(owner, sample.id)
    assert again.id != sample.id
    assert [d.id for d in deliveries(service, owner, auto)] == [sample.id, again.id]
