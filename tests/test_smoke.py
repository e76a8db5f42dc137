from __future__ import annotations


def test_link_and_resolve(service, owner, make_version):
    v = make_version(owner)
    linked = service.link(owner, v.membership_id, "wandb-registry-model/zoo", ["prod"])
    got = service.resolve(owner, "wandb-registry-model/zoo:prod")
    assert got.membership_id == linked.membership_id
    assert got.aliases == ["latest", "prod"]
