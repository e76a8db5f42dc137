"""Every example of README.md and docs/*.md runs as written, against a real server.

Each fenced block must carry a language tag from ``LANGUAGES`` (else the test
fails naming file:line, so nothing is skipped silently):

- ``console``: lines starting ``$ `` are commands (``\\`` continues a line,
  ``# comments`` are fine), the other lines their output. Each command runs in
  bash, in the document's sandbox; a non-zero exit fails the test with the
  document, line, command, stdout and stderr. Output lines are checked
  loosely: after the substitutions, every word of an output line must appear
  in what the command printed, except in the placeholders (tokens holding
  ``...``, such as a delivery id or ``rg_...``).
- ``bash`` / ``sh``: each logical line is a command, run like a console one.
- ``python``: the block runs in a subprocess (this interpreter; a block with
  an ``import wandb`` line runs with the official client's, from
  ``wandb_harness``, whose ``wandb`` command is on PATH too) with the
  sandbox's environment and folder; the blocks of a document run in order.
- ``json``: must parse as written (payload templates keep their
  ``${variables}`` inside strings, as docs/automations.md says they must).
- ``text``: synopses and output samples, not run.

The sandbox of a document (``Sandbox``): a fresh HOME, ``REGALIA_HOME`` in it,
a working folder holding ``FIXTURE_FILES`` (what a user obviously has, e.g.
the ``model.pt`` the tour logs), the venv's ``bin`` first on PATH (as after
installing Regalia), and a real server on 127.0.0.1 started the way the
README says, ``bash scripts/serve --port N`` from the clone, with
``REGALIA_VENV`` set to this interpreter's venv (it installs nothing) and
``REGALIA_AUTOMATION_ALLOW_PRIVATE=1`` (how a user lets automations call a
local receiver). README's own ``bash scripts/serve`` line is what starts it;
every other document starts where the README tour's first block leaves a
user: that server, and ``regalia login`` as its admin. The variables and the
folder a command leaves (``export``, ``cd``) carry over to the next command
and to python blocks. The server has a HOME of its own (as on a server
machine), so an example that used a local store instead of the server would
leave a database in the user's ``REGALIA_HOME``: the test fails then.

Outside the examples the test checks nothing of the receiver: README's
``automation test --wait`` output line (``succeeded 200``) says the
delivery reached it.

The substitutions (``SUBSTITUTIONS``, applied to commands and code):
``http://127.0.0.1:8080`` -> the test server's URL; ``rg_...`` -> the key the
last command that printed one printed (the server's admin key at first);
Slack URLs and ``example.com`` URLs -> the same path on a local receiver
(``Receiver``, answering 200). The exceptions (commands that cannot run in a
test as written): ``LONG_RUNNING`` ones start in the background until ready,
``NOT_RUN`` ones are not run, each with its reason. README shows
``bash scripts/serve`` twice ("The two commands", the tour): the second is the
server already running.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from automation_helpers import Receiver
from wandb_harness import wandb_python

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
DOCUMENTS = ["README.md", *DOCS]
LANGUAGES = {"console", "bash", "sh", "python", "json", "text"}
COMMAND_TIMEOUT_S = 60
SERVER_START_TIMEOUT_S = 60

# What a user obviously has in the folder they work in (the tour logs model.pt).
FIXTURE_FILES = {"model.pt": b"a model's weights\n"}

# Commands that cannot run as written, each matched by a regular expression on
# the whole command (comments removed).
LONG_RUNNING = {
    # runs the server in the foreground until stopped: started in the background
    # (from the clone, with --port of a free port) until it answers /healthz
    r"bash scripts/serve( .*)?": "the server runs until stopped",
}
NOT_RUN = {
    r"bash scripts/test( .*)?": "runs the whole test suite, this test included",
    # the sandbox has the tested wandb release in a virtualenv of its own already
    r"pip install( -U)? wandb": "the wandb client is installed (wandb_harness)",
}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    text_line: int = 0  # first line of the body


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    command: str
    output: list[str]

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(doc: str, text: str | None = None) -> list[Block]:
    """The fenced blocks of ``doc`` (or of ``text``, named ``doc``); a fence
    without a known language fails."""
    found: list[Block] = []
    if text is None:
        text = (ROOT / doc).read_text(encoding="utf-8")
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*(\S*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        assert lang in LANGUAGES, (
            f"{doc}:{i + 1}: a fenced block needs a language tag from {sorted(LANGUAGES)}"
            f" (found {lang or 'none'!r})"
        )
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        assert j < len(lines), f"{doc}:{i + 1}: the block is never closed"
        found.append(Block(doc, i + 1, lang, "\n".join(body), i + 2))
        i = j + 1
    return found


def commands(block: Block) -> list[Command]:
    """The commands of a console block (``$ `` lines, their continuations and
    output lines) or of a bash/sh block (every logical line)."""
    out: list[Command] = []
    lines = block.text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        start = block.text_line + i
        if block.lang == "console":
            if not line.startswith("$ "):
                if out and line.strip():
                    out[-1].output.append(line)
                i += 1
                continue
            line = line[2:]
        elif not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        parts = [line]
        while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            parts.append(lines[i])
        out.append(Command(block.doc, start, "\n".join(parts), []))
        i += 1
    return out


def strip_comment(command: str) -> str:
    """The command without a trailing ``# comment`` (for matching exceptions)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.commenters = "#"
    lexer.whitespace_split = True
    return " ".join(lexer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


KEY = re.compile(r"\brg_[A-Za-z0-9_-]{8,}")


@dataclass
class Sandbox:
    """One document's fresh machine: HOME, REGALIA_HOME, a working folder, a
    server and a local receiver."""

    base: Path
    receiver: Receiver
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = Path()
    url: str = ""
    key: str = ""
    server: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        home = self.base / "home"
        self.cwd = self.base / "work"
        self.state = self.base / "state"  # outside the user's folder
        for d in (home, self.cwd, self.state):
            d.mkdir()
        for name, data in FIXTURE_FILES.items():
            (self.cwd / name).write_bytes(data)
        keep = {k: v for k, v in os.environ.items() if k in {"LANG", "LC_ALL", "TERM", "TZ"}}
        self.env = {
            **keep,
            "HOME": str(home),
            "REGALIA_HOME": str(home / ".regalia"),
            # Regalia's environment first; the `wandb` command of the tested client after it
            "PATH": f"{Path(sys.prefix) / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
            f":{wandb_python().parent}",
            "REGALIA_SILENT": "1",
        }

    # substitutions ------------------------------------------------------
    def substitute(self, text: str) -> str:
        for pattern, replace in SUBSTITUTIONS:
            text = re.sub(pattern, lambda m, r=replace: r(self, m), text)  # type: ignore[misc]
        return text

    # the server ---------------------------------------------------------
    def start_server(self, command: str) -> None:
        """Run README's ``bash scripts/serve ...`` from the clone in the
        background, on a free port, until it answers /healthz."""
        port = free_port()
        log = (self.state / "server.log").open("wb")
        server_home = self.base / "server-home"
        server_home.mkdir()
        env = {
            **self.env,
            "HOME": str(server_home),
            "REGALIA_HOME": str(server_home / ".regalia"),
            "REGALIA_VENV": sys.prefix,
            "REGALIA_AUTOMATION_ALLOW_PRIVATE": "1",
        }
        self.server = subprocess.Popen(
            ["bash", "-c", f"{command} --port {port} --log-level warning"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        assert self.server.stdout is not None
        os.set_blocking(self.server.stdout.fileno(), False)
        printed = b""
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            printed += self.server.stdout.read() or b""
            if self.server.poll() is not None:
                raise AssertionError(
                    f"{command!r} exited {self.server.returncode}: "
                    f"{printed.decode()}{(self.state / 'server.log').read_text()[-3000:]}"
                )
            try:
                if b"Regalia server on" in printed and (
                    httpx.get(self.url + "/healthz", timeout=1).status_code == 200
                ):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{command!r} did not start: {printed.decode()}"
            time.sleep(0.1)
        found = KEY.search(printed.decode())
        assert found, f"the server printed no admin key: {printed.decode()}"
        self.key = found.group(0)

    def stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(5)

    # running ------------------------------------------------------------
    def run(self, cmd: Command) -> None:
        bare = strip_comment(cmd.command.replace("\\\n", " "))
        if any(re.fullmatch(p, bare) for p in NOT_RUN):
            return
        if any(re.fullmatch(p, bare) for p in LONG_RUNNING):
            if self.server is None:  # a second one is the server already running
                self.start_server(bare)
            return
        text = self.substitute(cmd.command)
        envfile, cwdfile = self.state / "env", self.state / "cwd"
        script = f'{text}\n__rc=$?\nenv -0 > {envfile}\npwd > {cwdfile}\nexit "$__rc"\n'
        proc = self._run(["bash", "-c", script], cmd, text)
        env = dict(item.split("=", 1) for item in envfile.read_text().split("\0") if "=" in item)
        for k in ("_", "SHLVL", "PWD", "OLDPWD", "__rc"):
            env.pop(k, None)
        self.env = env
        self.cwd = Path(cwdfile.read_text().strip())
        printed = proc.stdout + proc.stderr
        print(f"{cmd.where()}: $ {text}\n{printed}")  # the transcript, shown when a test fails
        keys = KEY.findall(printed)
        if keys:
            self.key = keys[-1]
        for line in cmd.output:
            shown = " ".join(t for t in self.substitute(line).split() if "..." not in t)
            missing = [w for w in re.findall(r"\w+", shown) if w not in printed]
            assert not missing, (
                f"{cmd.where()}: {cmd.command!r} did not print {missing} of the "
                f"documented output {line!r}; it printed:\n{printed}"
            )

    def run_python(self, block: Block) -> None:
        path = self.state / f"block_{block.line}.py"
        code = self.substitute(block.text)
        path.write_text(code, encoding="utf-8")
        cmd = Command(block.doc, block.line, block.text, [])
        # `import wandb` code runs with the official client, as its users run it
        python = (
            wandb_python() if re.search(r"^import wandb$", code, re.M) else Path(sys.executable)
        )
        proc = self._run([str(python), str(path)], cmd, code)
        print(f"{cmd.where()}: python\n{proc.stdout}{proc.stderr}")

    def _run(self, argv: list[str], cmd: Command, shown: str) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(
                argv,
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"{cmd.where()}: did not finish in {COMMAND_TIMEOUT_S} s:\n{shown}\n"
                f"stdout:\n{e.stdout!r}\nstderr:\n{e.stderr!r}"
            ) from None
        assert proc.returncode == 0, (
            f"{cmd.where()}: exited {proc.returncode}:\n{shown}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        local = Path(self.env["REGALIA_HOME"]) / "regalia.db"
        assert not local.exists(), (
            f"{cmd.where()}: used the local store {local}, not the server:\n{shown}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc


def _receiver_url(box: Sandbox, m: re.Match[str]) -> str:
    base = box.receiver.url.removesuffix("/hook")
    return base + (m.group("path") or "/")


SUBSTITUTIONS: list[tuple[str, Callable[[Sandbox, re.Match[str]], str]]] = [
    (r"http://127\.0\.0\.1:8080", lambda box, m: box.url),
    (r"\brg_\.\.\.", lambda box, m: box.key),
    (r"https://hooks\.slack\.com(?P<path>/[^\s'\"]*)", _receiver_url),
    (r"https://[a-z0-9.-]*\bexample\.com(?P<path>/[^\s'\"]*)?", _receiver_url),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([(200, {})]) as r:
        yield r


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_every_fenced_block_has_a_known_language(doc: str) -> None:
    for block in blocks(doc):
        if block.lang == "json":
            try:
                json.loads(block.text)
            except ValueError as e:
                raise AssertionError(
                    f"{doc}:{block.line}: the json block does not parse: {e}"
                ) from None


def _runnable(block: Block) -> bool:
    return block.lang in {"console", "bash", "sh", "python"}


@pytest.mark.parametrize("doc", DOCUMENTS)
def test_the_examples_run_as_written(doc: str, tmp_path: Path, receiver: Receiver) -> None:
    todo = [b for b in blocks(doc) if _runnable(b)]
    if not todo:
        return
    box = Sandbox(tmp_path, receiver)
    try:
        if doc != "README.md":  # where the tour's first block leaves a user
            box.start_server("bash scripts/serve")
            login = "regalia login --base-url http://127.0.0.1:8080 --api-key rg_..."
            box.run(Command(doc, 0, login, []))
        for block in todo:
            if block.lang == "python":
                box.run_python(block)
            else:
                for cmd in commands(block):
                    box.run(cmd)
        assert box.server is not None, f"{doc}: no example started a server"
    finally:
        box.stop_server()


def test_commands_split_like_bash_reads_them() -> None:
    block = Block("x.md", 1, "console", "$ a \\\n    b  # c\nout put\n$ d\n", 2)
    got = commands(block)
    assert [(c.line, c.command, c.output) for c in got] == [
        (2, "a \\\n    b  # c", ["out put"]),
        (5, "d", []),
    ]
    assert strip_comment("bash scripts/serve   # prints: x") == "bash scripts/serve"


def test_a_block_without_a_known_language_is_refused_naming_its_line() -> None:
    with pytest.raises(AssertionError, match=r"x\.md:3: a fenced block needs a language tag"):
        blocks("x.md", "# x\n\n```\nregalia ls\n```\n")
    with pytest.raises(AssertionError, match=r"x\.md:1: .*found 'shell'"):
        blocks("x.md", "```shell\nls\n```\n")
    assert [b.lang for b in blocks("x.md", "```text\na\n```\n\n```json\n{}\n```\n")] == [
        "text",
        "json",
    ]


def test_a_failing_command_fails_naming_the_document_line_and_output(
    tmp_path: Path, receiver: Receiver
) -> None:
    box = Sandbox(tmp_path, receiver)
    box.run(Command("x.md", 3, "export GREETING=hello; mkdir sub; cd sub", []))
    box.run(Command("x.md", 4, 'echo "$GREETING from $(basename "$PWD")"', ["hello from sub"]))
    with pytest.raises(AssertionError, match=r"(?s)x\.md:5: exited 3:.*out here.*err here"):
        box.run(Command("x.md", 5, "echo out here; echo err here >&2; exit 3", []))
    with pytest.raises(AssertionError, match=r"x\.md:6: .* did not print \['goodbye'\]"):
        box.run(Command("x.md", 6, "echo hello", ["hello goodbye"]))
