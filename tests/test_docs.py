"""The documentation keeps up with the code: every command and every setting."""

from __future__ import annotations

import re
from pathlib import Path

import click

from regalia.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]


def _commands(cmd: click.Command, prefix: tuple[str, ...] = ()) -> list[str]:
    if isinstance(cmd, click.Group):
        return [n for name, sub in cmd.commands.items() for n in _commands(sub, (*prefix, name))]
    return [" ".join(prefix)]


def test_every_cli_command_and_option_is_in_the_reference():
    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in _commands(cli):
        assert f"## `regalia {name}`" in doc, f"docs/cli.md does not document 'regalia {name}'"
    for cmd_name in _commands(cli):
        cmd = cli
        for part in cmd_name.split():
            cmd = cmd.commands[part]  # type: ignore[attr-defined]
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    assert opt in doc, f"docs/cli.md does not mention {opt} of 'regalia {cmd_name}'"


def test_every_environment_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    used: set[str] = set()
    for path in (ROOT / "src" / "regalia").rglob("*.py"):
        used |= set(re.findall(r"REGALIA_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    missing = sorted(v for v in used if f"`{v}`" not in readme)
    assert not missing, f"README's configuration table lacks {missing}"


def _command_names(cmd: click.Command, prefix: tuple[str, ...] = ()) -> set[str]:
    """Every command and group path: 'registry', 'registry member', 'registry member add'."""
    names = {" ".join(prefix)} if prefix else set()
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            names |= _command_names(sub, (*prefix, name))
    return names


def test_every_regalia_command_the_docs_name_exists():
    """A `regalia X Y` in the README or docs/ (prose, tables, examples) names a
    real command: the feature table and the tour cannot promise one that is gone."""
    known = _command_names(cli)
    groups = {n for n in known if isinstance(_lookup(n), click.Group)}
    wrong: list[str] = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(?<![\w/.-])(?<!import )regalia((?: [a-z][a-z-]*)+)", text):
            words = match.group(1).split()
            named = ""
            for word in words:
                candidate = f"{named} {word}".strip()
                if candidate in known:
                    named = candidate
                else:
                    break
            first_is_command = bool(named)
            if not first_is_command and _looks_like_command(text, match.start()):
                wrong.append(f"{path.name}: regalia {' '.join(words[:2])}")
            elif named in groups and len(words) > named.count(" ") + 1:
                nxt = words[named.count(" ") + 1]
                if _looks_like_command(text, match.start()) and nxt.isalpha():
                    wrong.append(f"{path.name}: regalia {named} {nxt}")
    assert not wrong, f"the docs name commands that do not exist: {sorted(set(wrong))}"


def _lookup(name: str) -> click.Command:
    cmd: click.Command = cli
    for part in name.split():
        cmd = cmd.commands[part]  # type: ignore[attr-defined]
    return cmd


def _looks_like_command(text: str, at: int) -> bool:
    """Inside code: a backtick span or a fenced block (prose says 'Regalia' with a capital)."""
    line_start = text.rfind("\n", 0, at) + 1
    before = text[line_start:at]
    fenced = text.count("\n```", 0, at) % 2 == 1
    return fenced or before.count("`") % 2 == 1 or before.lstrip().startswith("$")
