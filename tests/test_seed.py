"""The seed document's two code examples, run unchanged but for
``import wandb`` -> ``import regalia as wandb``, in a fresh REGALIA_HOME.

``seed_examples/`` holds the code blocks exactly as the document has them; when
the document is beside the checkout (``../shared/seed``), the test first checks
that they still match it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers import ServerProcess

import regalia

EXAMPLES = Path(__file__).parent / "seed_examples"
SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed"
PLACEHOLDERS = {
    # Example 1 asks the reader to replace each <placeholder> with a value.
    "<team_entity>": "smle-reg-team-2",
    "<project_name>": "zoo_experiment",
    "<name>": "zoo_model",
    "<type>": "model",
    "<local_path_to_artifact>": "model.pt",
    "<registry_name>": "Model",
    "<collection_name>": "Zoo_Models",
    "<alias_1>": "staging",
    "<alias_2>": "best_model",
}


def test_seed_examples_match_the_document():
    docs = sorted(SEED_DIR.glob("*.txt")) if SEED_DIR.is_dir() else []
    if not docs:
        pytest.skip("the seed document is not beside this checkout")
    blocks = re.findall(r"```python\n(.*?)```", docs[0].read_text(encoding="utf-8"), re.S)
    ours = [
        p.read_text(encoding="utf-8").replace("import regalia as wandb\n", "import wandb\n", 1)
        for p in sorted(EXAMPLES.glob("example_*.py"))
    ]
    assert ours == blocks


def _run(script: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def seed_env(sdk_env, sdk_backend, tmp_path, monkeypatch):
    """The examples' environment. Over HTTP, the SDK talks to a ``regalia server``
    process started here on 127.0.0.1 (and so do the test's own checks)."""
    env = dict(os.environ)
    src = str(Path(regalia.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    if sdk_backend != "http":
        yield env
        return
    server_env = {k: v for k, v in env.items() if k not in ("REGALIA_BASE_URL", "REGALIA_API_KEY")}
    with ServerProcess(server_env, log=tmp_path / "server.log") as server:
        env["REGALIA_BASE_URL"] = server.url
        monkeypatch.setenv("REGALIA_BASE_URL", server.url)
        # A client's own home: nothing of the server's folder is shared with it.
        env["REGALIA_HOME"] = str(tmp_path / "client")
        env.pop("REGALIA_DATABASE_URL")
        yield env


def test_seed_example_2_links_zoo_dataset_with_two_aliases(sdk_env, seed_env, workdir):
    script = (EXAMPLES / "example_2.py").read_text(encoding="utf-8")
    (workdir / "zoo_dataset.pt").write_bytes(b"zoo tensor 0" * 100)
    (workdir / "zoo_labels.pt").write_bytes(b"labels 0" * 100)
    _run(script, workdir, seed_env)

    art = regalia.Api().artifact("wandb-registry-Model/Zoo_Classifier_Models:production-us")
    assert art.version == "v0"
    assert sorted(art.aliases) == ["latest", "production-eu", "production-us"]
    assert art.type == "dataset"
    assert sorted(f.path for f in art.files()) == ["zoo_dataset", "zoo_labels"]
    out = Path(art.download(root=str(workdir / "out")))
    assert (out / "zoo_labels").read_bytes() == b"labels 0" * 100

    # Three links of three different contents make v0, v1, v2 with latest on v2.
    for i in (1, 2):
        (workdir / "zoo_dataset.pt").write_bytes(f"zoo tensor {i}".encode() * 100)
        _run(script, workdir, seed_env)
    api = regalia.Api()
    coll = "wandb-registry-Model/Zoo_Classifier_Models"
    assert [api.artifact(f"{coll}:v{i}").version for i in range(3)] == ["v0", "v1", "v2"]
    assert api.artifact(f"{coll}:latest").version == "v2"
    assert "latest" not in api.artifact(f"{coll}:v0").aliases
    assert api.artifact(f"{coll}:production-us").version == "v2"


def test_seed_example_1_with_its_placeholders_filled_in(sdk_env, seed_env, workdir):
    script = (EXAMPLES / "example_1.py").read_text(encoding="utf-8")
    for placeholder, value in PLACEHOLDERS.items():
        script = script.replace(f'"{placeholder}"', f'"{value}"')
    assert "<" not in script.split("import regalia as wandb", 1)[1].replace("< >", "")
    (workdir / "model.pt").write_bytes(b"weights")
    _run(script, workdir, seed_env)
    art = regalia.Api().artifact("wandb-registry-model/Zoo_Models:best_model")
    assert (art.version, sorted(art.aliases)) == ("v0", ["best_model", "latest", "staging"])
    assert art.source_qualified_name == "smle-reg-team-2/zoo_experiment/zoo_model:v0"
