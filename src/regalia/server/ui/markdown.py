"""Markdown of collection cards and descriptions, rendered safely: raw HTML in
the text is escaped (``html=False``), and links keep to http(s) and mailto."""

from __future__ import annotations

import functools
from typing import Any

from markupsafe import Markup


@functools.cache
def _parser() -> Any:
    from markdown_it import MarkdownIt  # on the first card shown, not at start-up

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def to_html(text: str | None) -> Markup:
    return Markup(_parser().render(text or ""))  # noqa: S704 - html=False escapes raw HTML
