"""Markdown of collection cards and descriptions, rendered safely: raw HTML in
the text is escaped (``html=False``), and links keep to http(s) and mailto."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def to_html(text: str | None) -> Markup:
    return Markup(_MD.render(text or ""))  # noqa: S704 - html=False escapes raw HTML
