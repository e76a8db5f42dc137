"""The SDK with W&B's names: Run, Artifact, Api and the registries -> collections ->
versions chain, on the embedded default and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

import regalia as wandb
from regalia.errors import InvalidFilter, PermissionDenied, RegistryNotFound


def _log(run, workdir: Path, name: str, content: str, type: str = "model", **kw):
    f = workdir / f"{name}-{abs(hash(content))}.bin"
    f.write_text(content)
    art = wandb.Artifact(name, type=type, metadata=kw.pop("metadata", None))
    art.add_file(str(f), name="weights.bin")
    return art


@pytest.fixture
def run(sdk_env, workdir):
    return wandb.init(entity="vision", project="zoo")


def test_log_artifact_numbers_source_versions_and_reuses_identical_content(run, workdir):
    a0 = run.log_artifact(_log(run, workdir, "net", "w0"))
    a1 = run.log_artifact(_log(run, workdir, "net", "w1"))
    again = run.log_artifact(_log(run, workdir, "net", "w0"))
    assert (a0.version, a1.version, again.version) == ("v0", "v1", "v0")
    assert again.created is False
    assert a1.source_qualified_name == "vision/zoo/net:v1"
    assert wandb.Api().artifact("vision/zoo/net:latest").version == "v1"


def test_add_dir_keeps_relative_paths_and_download_restores_them(run, workdir):
    src = workdir / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    art = wandb.Artifact("tree", type="model")
    art.add_dir(str(src))
    logged = run.link_artifact(art, "wandb-registry-model/tree")
    assert sorted(f.path for f in logged.files()) == ["a.txt", "sub/b.txt"]
    out = Path(wandb.Api().artifact("wandb-registry-model/tree:latest").download(root="out"))
    assert (out / "sub" / "b.txt").read_text() == "B"


def test_default_download_root_is_artifacts_name_version(run, workdir):
    run.link_artifact(_log(run, workdir, "net", "w0"), "wandb-registry-model/zoo")
    path = wandb.Api().artifact("wandb-registry-model/zoo:v0").download()
    assert Path(path) == Path("artifacts") / "zoo:v0"
    assert (workdir / "artifacts" / "zoo:v0" / "weights.bin").read_text() == "w0"


def test_second_download_reads_nothing_from_the_store(run, workdir, sdk_env):
    run.link_artifact(_log(run, workdir, "net", "payload"), "wandb-registry-model/zoo")
    api = wandb.Api()
    art = api.artifact("wandb-registry-model/zoo:latest")
    reads: list[str] = []
    backend = api._backend
    stores_for = backend.blobs_for

    def counting_store(membership_id):
        # Whatever the backend, every read of file contents goes through the
        # store it hands to the download: the store itself, or the server.
        store = stores_for(membership_id)
        original_open, original_local = store.open, store.local_path

        def counting_open(digest):
            reads.append(digest)
            return original_open(digest)

        def counting_local(digest):
            path = original_local(digest)
            if path is not None:  # a remote store has no local path: open() reads
                reads.append(digest)
            return path

        store.open, store.local_path = counting_open, counting_local
        return store

    backend.blobs_for = counting_store
    art.download(root="first")
    assert len(reads) == 1
    art.download(root="second")
    assert len(reads) == 1
    assert (workdir / "second" / "weights.bin").read_text() == "payload"


def test_aliases_tags_description_metadata_save_and_are_seen_by_every_link(run, workdir):
    linked = run.link_artifact(_log(run, workdir, "net", "w0"), "wandb-registry-model/zoo")
    linked.aliases.append("staging")
    linked.tags.append("vision")
    linked.description = "first try"
    linked.metadata["acc"] = 0.8
    linked.save()
    again = wandb.Api().artifact("wandb-registry-model/zoo:staging")
    assert again.tags == ["vision"] and again.metadata == {"acc": 0.8}
    source = again.source_artifact
    assert (source.description, source.tags) == ("first try", ["vision"])
    assert [a.qualified_name for a in source.linked_artifacts] == [again.qualified_name]
    again.aliases.remove("staging")
    again.save()
    assert wandb.Api().artifact("wandb-registry-model/zoo:v0").aliases == ["latest"]


def test_use_artifact_records_lineage(run, workdir):
    run.link_artifact(_log(run, workdir, "net", "w0"), "wandb-registry-model/zoo")
    consumer = wandb.init(entity="vision", project="eval", job_type="eval")
    used = consumer.use_artifact("wandb-registry-model/zoo:latest")
    assert used.logged_by() == run.id
    assert used.used_by() == [consumer.id]
    short = consumer.use_artifact("vision/zoo/net:v0", type="model")
    assert short.version == "v0"


def test_unlink_and_delete_through_the_sdk(run, workdir):
    art = _log(run, workdir, "net", "w0")
    linked = run.link_artifact(art, "wandb-registry-model/zoo")
    linked.unlink()
    assert not wandb.Api().artifact_exists("wandb-registry-model/zoo:v0")
    assert wandb.Api().artifact_exists("vision/zoo/net:v0")
    art.delete()
    assert not wandb.Api().artifact_exists("vision/zoo/net:v0")


def _populate(run, workdir):
    api = wandb.Api()
    api.create_registry("Vision", description="image models", artifact_types=["model"])
    for i in range(5):
        art = _log(run, workdir, f"net{i % 2}", f"w{i}", metadata={"acc": 0.5 + i / 10})
        coll = "resnet" if i % 2 == 0 else "vit"
        run.link_artifact(art, f"wandb-registry-Vision/{coll}", aliases=[f"cand-{i}"])
    run.link_artifact(
        _log(run, workdir, "data", "d0", type="dataset"), "wandb-registry-dataset/zoo"
    )
    return api


def test_registries_collections_versions_chain_with_filters(run, workdir):
    api = _populate(run, workdir)
    assert [r.name for r in api.registries()] == ["dataset", "model", "Vision"]
    vision = api.registries(filter={"name": {"$regex": "(?i)^vis"}})
    assert [r.name for r in vision] == ["Vision"]
    assert sorted(c.name for c in vision.collections()) == ["resnet", "vit"]
    assert [c.name for c in vision.collections(filter={"name": "vit"})] == ["vit"]
    good = vision.versions(filter={"metadata.acc": {"$gte": 0.75}})
    assert sorted(v.aliases[-1] for v in good) == ["cand-3", "cand-4"]
    by_alias = api.registries().versions(filter={"alias": "cand-2"})
    assert [(v.collection, v.version) for v in by_alias] == [("resnet", "v1")]
    combo = vision.collections(filter={"name": "resnet"}).versions(
        filter={"$or": [{"alias": "cand-0"}, {"version": {"$gt": 1}}]}, order="version"
    )
    assert [v.version for v in combo] == ["v0", "v2"]


def test_versions_are_paged_with_a_cursor(run, workdir):
    for i in range(7):
        run.link_artifact(_log(run, workdir, "net", f"w{i}"), "wandb-registry-model/zoo")
    versions = wandb.Api().registry("model").collection("zoo").versions(order="-version")
    versions._per_page = 3
    assert [v.version for v in versions] == [f"v{i}" for i in range(6, -1, -1)]


def test_bad_filters_are_refused_with_the_problem_named(run, workdir):
    with pytest.raises(InvalidFilter, match=r"\$foo"):
        list(wandb.Api().registries(filter={"name": {"$foo": 1}}))


def test_listings_hide_restricted_registries_from_non_members(run, workdir, sdk_env):
    api = wandb.Api()
    api.create_registry("Secret", visibility="restricted")
    key = api._backend.create_user("bob", org_role="member")[1]
    bob = wandb.Api(api_key=key)
    assert "Secret" not in [r.name for r in bob.registries()]
    with pytest.raises(RegistryNotFound):
        bob.registry("Secret")
    with pytest.raises(PermissionDenied):
        bob.registry("model").protect_alias("production")


def test_registry_settings_and_protected_aliases_through_the_sdk(sdk_env):
    api = wandb.Api()
    reg = api.create_registry("Vision", visibility="restricted", artifact_types=["model"])
    assert reg.full_name == "wandb-registry-Vision" and reg.role == "admin"
    assert reg.protect_alias("production") == ["production"]
    reg.description = "image models"
    reg.artifact_types = []
    reg.save()
    fresh = api.registry("vision")
    assert (fresh.description, fresh.allow_all_artifact_types) == ("image models", True)
    assert fresh.protected_aliases == ["production"]
    assert any(h.action == "protected_alias_add" for h in fresh.history())


def test_collection_card_and_history(run, workdir):
    run.link_artifact(
        _log(run, workdir, "net", "w0"), "wandb-registry-model/zoo", aliases=["staging"]
    )
    coll = wandb.Api().registry("model").collection("zoo")
    coll.description = "# Zoo\nclassifier"
    coll.tags = ["vision"]
    coll.save()
    again = wandb.Api().registry("model").collection("zoo")
    assert (again.description, again.tags, again.version_count) == (
        "# Zoo\nclassifier",
        ["vision"],
        1,
    )
    actions = [h.action for h in again.history()]
    assert "link" in actions and "alias_add" in actions
