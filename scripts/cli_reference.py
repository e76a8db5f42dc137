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


def help_markdown(help_text: str) -> str:
    """A docstring as Markdown: each click ``\\b`` paragraph (kept as written)
    becomes a fenced block, ```console with ``$ `` before each command when it
    shows ``regalia`` commands (the docs test runs those), else ```text."""
    out: list[str] = []
    for para in inspect.cleandoc(help_text).split("\n\n"):
        lines = para.split("\n")
        if lines[0].strip() != "\b":
            out.append(para)
            continue
        body = lines[1:]
        if body and body[0].startswith("regalia "):
            shown = [f"$ {line}" if line.startswith("regalia ") else line for line in body]
            out.append("\n".join(["```console", *shown, "```"]))
        else:
            out.append("\n".join(["```text", *body, "```"]))
    return "\n\n".join(out)


def section(name: str, cmd: click.Command) -> str:
    ctx = click.Context(cmd, info_name=f"regalia {name}")
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    lines = [f"## `regalia {name}`", "", "```text", f"regalia {name} {usage}", "```", ""]
    lines += [help_markdown(cmd.help or ""), ""]
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
