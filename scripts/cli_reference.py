"""Write docs/cli.md from the click commands (run after changing the CLI):

.venv/bin/python scripts/cli_reference.py
"""

from __future__ import annotations

import inspect
from pathlib import Path

import click

from regalia.cli.main import cli

HEADER = """# `regalia` command reference

Every command accepts the root options `--home DIR` (sets `REGALIA_HOME`) and
`--api-key KEY` (act as that key's user). Read commands take `--json`. An
expected failure prints one `error: ...` line and exits 1; usage errors exit 2.

The commands talk to a server when `REGALIA_BASE_URL` is set or after
`regalia login`; otherwise to the store in this process (`REGALIA_HOME`).
"""


def walk(cmd: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        return [x for name, sub in sorted(cmd.commands.items()) for x in walk(sub, (*path, name))]
    return [(" ".join(path), cmd)]


def section(name: str, cmd: click.Command) -> str:
    ctx = click.Context(cmd, info_name=f"regalia {name}")
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines = [f"## `regalia {name}`", "", "```", f"regalia {name} {usage}", "```", ""]
    lines += [inspect.cleandoc(cmd.help or ""), ""]
    options = []
    for param in cmd.params:
        record = param.get_help_record(ctx)
        if record is None or not isinstance(param, click.Option):
            continue
        term, text = record
        options.append(f"- `{term}`: {text}")
    if options:
        lines += [*options, ""]
    return "\n".join(lines)


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
    body = "\n".join(section(name, cmd) for name, cmd in walk(cli))
    out.write_text(HEADER + "\n" + body.rstrip() + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
