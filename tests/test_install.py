"""Regalia installs the way a Python user expects.

``pip install .`` and the wheel put ``regalia`` on PATH with the runtime
dependencies only; the wheel carries every file the server needs (templates,
static files, migrations), so a server started from it answers its web UI and
API docs; the code imports nothing that the runtime dependencies do not bring.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from servers import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "regalia"
TEST_TOOLS = {"pytest", "playwright", "schemathesis", "ruff", "mypy", "psutil", "setuptools"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the source (the checkout gets no build files)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "-w", str(out), str(src)],
        check=True,
        timeout=180,
    )
    (built,) = out.glob("regalia-*.whl")
    return built


def test_the_wheel_holds_every_file_the_package_has(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        str(p.relative_to(SRC.parent))
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing[:10]}"


def test_the_wheel_requires_the_runtime_dependencies_only(wheel: Path):
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode()
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    plain = [
        _name(line.split(":", 1)[1].strip())
        for line in meta.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert plain, "the wheel declares no runtime dependencies"
    assert not TEST_TOOLS & set(plain), f"pip install pulls test tools: {TEST_TOOLS & set(plain)}"
    assert "uvicorn" in plain and "fastapi" in plain
    assert re.search(r"^regalia\s*=\s*regalia\.cli\.main:main$", entry_points, re.M)


def test_a_server_started_from_the_installed_wheel_serves_ui_docs_and_api(
    wheel: Path, tmp_path: Path
):
    """``pip install regalia-*.whl`` (into a target folder, its dependencies
    from this environment): its ``bin/regalia`` starts a server from the
    wheel's own files, not from this checkout."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
        + ["--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    cli = target / "bin" / "regalia"
    assert cli.is_file(), "the wheel installs no 'regalia' command"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGALIA_")}
    env |= {"PYTHONPATH": str(target), "REGALIA_HOME": str(tmp_path / "home")}
    where = subprocess.run(
        [sys.executable, "-c", "import regalia; print(regalia.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(target), f"regalia came from {where}, not the wheel"
    version = subprocess.run([str(cli), "--version"], env=env, capture_output=True, text=True)
    assert version.returncode == 0 and "regalia" in version.stdout, version.stderr
    with ServerProcess(env, log=tmp_path / "server.log", command=[str(cli), "server"]) as server:
        assert server.api_key, "the first start printed no admin key"
        login = httpx.get(server.url + "/login", timeout=10)
        assert login.status_code == 200 and "API key" in login.text
        docs = httpx.get(server.url + "/docs", timeout=10)
        assert docs.status_code == 200
        assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', docs.text + login.text)
        assert assets, "the docs and login pages load no script or style sheet"
        for asset in assets:
            assert httpx.get(server.url + asset, timeout=10).status_code == 200, asset
        headers = {"Authorization": f"Bearer {server.api_key}"}
        regs = httpx.get(server.url + "/api/v1/registries", headers=headers, timeout=10)
        assert regs.status_code == 200
        assert {r["name"] for r in regs.json()} >= {"model", "dataset"}


def _runtime_closure() -> set[str]:
    """The runtime requirements and everything they require (installed here)."""
    todo = [_name(r) for r in _project()["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def test_the_code_imports_only_what_the_runtime_dependencies_bring():
    provided = _runtime_closure()
    owners = metadata.packages_distributions()
    wrong: dict[str, list[str]] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top == "regalia":
                    continue
                dists = {_name(d) for d in owners.get(top, [])}
                if not dists & provided:
                    wrong.setdefault(top, []).append(str(path.relative_to(ROOT)))
    assert not wrong, f"imported but not brought by a runtime dependency: {wrong}"


def test_scripts_serve_on_a_fresh_clone_installs_the_runtime_only_and_says_where_the_cli_is(
    tmp_path: Path,
):
    """The README's first command on a machine with no virtualenv: it installs
    Regalia without the test tools, tells how to reach ``regalia``, and serves.
    (It installs from the package index pip is configured with, as a user's does.)"""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, clone / name)
    for folder in ("src", "scripts"):
        shutil.copytree(
            ROOT / folder,
            clone / folder,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    venv = clone / ".venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGALIA_", "VIRTUAL_ENV"))}
    env |= {"REGALIA_HOME": str(tmp_path / "home"), "PATH": "/usr/local/bin:/usr/bin:/bin"}
    server = ServerProcess(
        env,
        log=tmp_path / "serve.log",
        command=["bash", str(clone / "scripts" / "serve")],
        log_level="info",
    )
    server.start(timeout=240)
    try:
        assert server.api_key, "the first start printed no admin key"
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    finally:
        server.stop()
    said = (tmp_path / "serve.log").read_text()
    assert f"The regalia CLI is {venv}/bin/regalia" in said
    assert f'export PATH="{venv}/bin:$PATH"' in said
    assert (venv / "bin" / "regalia").is_file()
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {_name(line.split("==")[0]) for line in installed.splitlines() if "==" in line}
    assert "fastapi" in names
    assert not (TEST_TOOLS - {"setuptools"}) & names, f"test tools installed: {TEST_TOOLS & names}"
