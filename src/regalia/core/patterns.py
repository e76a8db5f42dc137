"""Regular expressions that users send, matched in linear time (RE2).

Filter ``$regex`` patterns and automations' ``alias_regex`` / ``tag_regex``
are RE2 syntax (https://github.com/google/re2/wiki/Syntax): no
backreferences (``\\1``), lookarounds (``(?=...)``) or possessive
quantifiers, which are what lets a backtracking engine take exponential time.
RE2 matches in time linear in the text, times the size of the compiled
pattern, which :data:`~regalia.core.limits.MAX_PATTERN_PROGRAM` bounds (with
the pattern's length, :data:`~regalia.core.limits.MAX_PATTERN_LENGTH`).

``.`` matches any character, a newline too (as PostgreSQL's ``~`` does), and
``$`` is the end of the text only. Compiled patterns are cached per process.

    >>> pattern_problem("(a+)+$") is None    # linear in RE2, so allowed
    True
    >>> pattern_problem(r"(a)\\1").text.startswith("is not RE2 syntax")
    True
    >>> search("^prod", "production")
    True
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import re2  # type: ignore[import-untyped]

from regalia.core.limits import MAX_PATTERN_LENGTH, MAX_PATTERN_PROGRAM

# What the problem text means, for messages that name the field.
RE2_HINT = (
    "RE2 syntax is required (no backreferences such as \\1, lookarounds such as (?=...) "
    "or possessive quantifiers such as a*+)"
)
_CACHE_SIZE = 256


class Compiled(Protocol):
    """A compiled RE2 pattern (the part of ``re2._Regexp`` used here)."""

    programsize: int

    def search(self, text: str) -> object | None: ...


def _options() -> Any:
    options = re2.Options()
    options.dot_nl = True  # '.' matches '\n', as in PostgreSQL's regular expressions
    options.never_capture = True  # only "does it match" is asked: the DFA alone answers
    options.log_errors = False  # a bad pattern is the caller's 400, not a log line
    return options


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(pattern: str) -> tuple[Compiled | None, str]:
    """``(compiled, "")``, or ``(None, why RE2 refused it)``; cached, failures too."""
    try:
        return cast(Compiled, re2.compile(pattern, _options())), ""
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return None, str(reason)


@dataclass(frozen=True)
class Problem:
    """Why a pattern may not be used: ``text`` follows the pattern's name in a
    message; ``limit`` is the details of the limit it passed, if it was one."""

    text: str
    limit: dict[str, Any] = field(default_factory=dict)


def pattern_problem(
    pattern: str, *, also: Callable[[str], str | None] | None = None
) -> Problem | None:
    """Why ``pattern`` may not be used, or None if it may.

    Checks, in order: the length limit, NUL characters, RE2 syntax, then
    ``also`` (a further rule of the caller's, given a pattern RE2 accepts; it
    returns what the pattern uses that is refused), then the size of the
    compiled program.

    Example::

        >>> pattern_problem("x" * 300).text
        'has 300 characters; the limit is 256'
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        return Problem(
            f"has {len(pattern)} characters; the limit is {MAX_PATTERN_LENGTH}",
            {"limit": "pattern_length", "maximum": MAX_PATTERN_LENGTH},
        )
    if "\x00" in pattern:
        return Problem("contains a NUL character")
    regex, reason = _compile(pattern)
    if regex is None:
        return Problem(f"is not RE2 syntax ({reason}); {RE2_HINT}")
    refused = also(pattern) if also else None
    if refused:
        return Problem(f"uses {refused}, which is not supported")
    if regex.programsize > MAX_PATTERN_PROGRAM:
        return Problem(
            f"is too complex: it compiles to {regex.programsize} RE2 instructions, "
            f"the limit is {MAX_PATTERN_PROGRAM} (use smaller repetition counts such as "
            "{1,20}, or fewer alternatives)",
            {"limit": "pattern_program", "maximum": MAX_PATTERN_PROGRAM},
        )
    return None


def compiled(pattern: str) -> Compiled | None:
    """The compiled pattern (cached), or None when RE2 cannot compile it."""
    return _compile(pattern)[0]


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches anywhere in ``text``.

    A pattern RE2 cannot compile matches nothing (callers validate patterns
    with :func:`pattern_problem` when they are written; this keeps a row
    stored before that rule from raising).
    """
    regex = _compile(pattern)[0]
    return regex is not None and regex.search(text) is not None
