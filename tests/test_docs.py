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
        used |= set(re.findall(r"REGALIA_[A-Z_]+", path.read_text(encoding="utf-8")))
    missing = sorted(v for v in used if f"`{v}`" not in readme)
    assert not missing, f"README's configuration table lacks {missing}"
