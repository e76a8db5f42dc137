"""Bad input gets a clear error that names what is wrong, and nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import regalia as wandb
from regalia.core import names
from regalia.errors import (
    AlreadyExists,
    FileChanged,
    FileMissing,
    InvalidName,
    NotFound,
)


def _blob_count(home: Path) -> int:
    root = home / "blobs"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _assert_nothing_logged(name: str = "bad") -> None:
    run_entity = wandb.Api().default_entity
    assert not wandb.Api().artifact_exists(f"{run_entity}/p/{name}:latest")


@pytest.fixture
def run(sdk_env, workdir):
    return wandb.init(project="p")


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("has space", "artifact_name_characters"),
        ("slash/inside", "artifact_name_characters"),
        ("x" * 129, "artifact_name_length"),
        ("", "artifact_name"),
    ],
)
def test_invalid_artifact_names_name_the_rule(name, rule):
    with pytest.raises(InvalidName) as err:
        wandb.Artifact(name, type="model")
    assert err.value.details["rule"] == rule


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("a/b", "/ \\ # ? % :"),
        ("a#b", "may not contain"),
        ("x" * 114, "limit is 113"),
        ("tab\there", "control"),
    ],
)
def test_invalid_registry_names_are_refused_and_nothing_is_created(sdk_env, name, fragment):
    api = wandb.Api()
    before = [r.name for r in api.registries()]
    with pytest.raises(InvalidName, match="registry name"):
        api.create_registry(name)
    assert [r.name for r in api.registries()] == before


def test_registry_names_are_unique_ignoring_case(sdk_env):
    api = wandb.Api()
    api.create_registry("Vision")
    with pytest.raises(AlreadyExists, match="ignore case"):
        api.create_registry("vision")


@pytest.mark.parametrize("alias", ["latest", "LATEST", "v7", "v0"])
def test_managed_aliases_added_by_hand_are_refused(run, workdir, alias):
    for content in ("one", "two"):
        (workdir / "f").write_text(content)
        art = wandb.Artifact("zoo", type="model")
        art.add_file(str(workdir / "f"))
        run.link_artifact(art, "wandb-registry-model/zoo")
    with pytest.raises(InvalidName, match="managed by the registry"):
        run.link_artifact(art, "wandb-registry-model/zoo", aliases=[alias])
    first = wandb.Api().artifact("wandb-registry-model/zoo:v0")
    first.aliases.append(alias)
    with pytest.raises(InvalidName, match="managed by the registry"):
        first.save()
    assert wandb.Api().artifact("wandb-registry-model/zoo:v0").aliases == []
    assert wandb.Api().artifact("wandb-registry-model/zoo:v1").aliases == ["latest"]


@pytest.mark.parametrize("alias", ["has space", "a/b", "a:b", "x" * 129, ""])
def test_invalid_aliases_are_refused(run, workdir, alias):
    (workdir / "f").write_text("x")
    art = wandb.Artifact("zoo", type="model")
    art.add_file(str(workdir / "f"))
    with pytest.raises(InvalidName, match="alias"):
        run.link_artifact(art, "wandb-registry-model/zoo", aliases=[alias])
    with pytest.raises(NotFound):
        wandb.Api().artifact("wandb-registry-model/zoo")


@pytest.mark.parametrize("tag", [" lead", "trailing ", "bad!", "x" * 129])
def test_invalid_tags_are_refused(tag):
    with pytest.raises(InvalidName, match="tag"):
        names.validate_tag(tag)


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a//b", "./x"])
def test_path_traversal_in_add_file_is_refused(run, workdir, name):
    (workdir / "f").write_text("x")
    art = wandb.Artifact("bad", type="model")
    with pytest.raises(InvalidName, match="path traversal"):
        art.add_file(str(workdir / "f"), name=name)
    assert art.size == 0


def test_a_missing_file_is_a_clear_error(run, workdir, sdk_env):
    art = wandb.Artifact("bad", type="model")
    with pytest.raises(FileMissing, match="no such file"):
        art.add_file(str(workdir / "nope.bin"))
    assert _blob_count(sdk_env.home) == 0


def test_a_file_removed_before_upload_logs_nothing(run, workdir, sdk_env):
    f = workdir / "model.bin"
    f.write_bytes(b"weights")
    art = wandb.Artifact("bad", type="model")
    art.add_file(str(f))
    f.unlink()
    with pytest.raises(FileMissing, match="removed before upload"):
        run.log_artifact(art)
    _assert_nothing_logged()
    assert _blob_count(sdk_env.home) == 0


def test_a_file_changed_between_add_file_and_upload_logs_nothing(run, workdir, sdk_env):
    good = workdir / "a.bin"
    good.write_bytes(b"first file")
    f = workdir / "model.bin"
    f.write_bytes(b"weights v1")
    art = wandb.Artifact("bad", type="model")
    art.add_file(str(good))
    art.add_file(str(f))
    f.write_bytes(b"weights v2, longer")
    with pytest.raises(FileChanged, match="changed after add_file"):
        run.log_artifact(art)
    _assert_nothing_logged()
    assert _blob_count(sdk_env.home) == 0


def test_a_file_changed_in_place_with_same_size_is_detected(run, workdir):
    f = workdir / "model.bin"
    f.write_bytes(b"AAAA")
    art = wandb.Artifact("bad", type="model")
    art.add_file(str(f))
    st = f.stat()
    f.write_bytes(b"BBBB")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(FileChanged):
        run.log_artifact(art)
    _assert_nothing_logged()


@pytest.mark.parametrize(
    "path",
    [
        "wandb-registry-model",
        "a/b",
        "wandb-registry-model/zoo:",
        "x/wandb-registry-m/c/d",
        "wandb-registry-model/bad name",
    ],
)
def test_malformed_paths_say_what_form_is_expected(sdk_env, path):
    with pytest.raises(InvalidName):
        wandb.Api().artifact(path)
