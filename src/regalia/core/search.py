"""The global search's matching rule (SPEC §6), pure: case-insensitive, by word
prefix. A text's words are its runs of letters and digits (``best_model`` has
the words ``best`` and ``model``); a query matches when each of its words is
the start of some word of the text, or the start of the whole text."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+")
MAX_QUERY = 200


def query_terms(query: str) -> list[str]:
    """The query's words, lower-cased (empty: nothing to search)."""
    return [w.lower() for w in _WORD.findall(query[:MAX_QUERY])]


def matches(text: str | None, terms: list[str]) -> bool:
    if not text or not terms:
        return False
    lowered = text.lower()
    words = _WORD.findall(lowered)
    return all(lowered.startswith(t) or any(w.startswith(t) for w in words) for t in terms)


def prefix_bounds(prefix: str) -> tuple[str, str]:
    """``low <= s < high`` holds for the strings that start with ``prefix`` (an
    index range scan; callers add ``LIKE prefix%`` for exactness)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
