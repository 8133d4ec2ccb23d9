"""Safe Markdown for project guidelines.

Guidelines are written by admins, but rendered to every annotator, so they get no more trust than
any other input: raw HTML in the Markdown is shown as text (the HTML block and inline-HTML
processors are removed), and links or images whose URL scheme is not http(s), mailto or relative
(``javascript:``, ``data:``...) lose that URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

import markdown
from markdown.treeprocessors import Treeprocessor
from markupsafe import Markup

SAFE_SCHEMES = ("", "http", "https", "mailto")
"""URL schemes kept in links and images ("" = relative URL)."""


class _UrlSanitizer(Treeprocessor):
    """Drop href/src attributes with an unsafe scheme."""

    def run(self, root: Element) -> None:
        for element in root.iter():
            for attribute in ("href", "src"):
                url = element.get(attribute)
                if url is not None and not _is_safe(url):
                    del element.attrib[attribute]


def _is_safe(url: str) -> bool:
    # Browsers ignore whitespace and control characters inside a scheme ("java\tscript:").
    cleaned = "".join(ch for ch in url if ch > " ").lower()
    try:
        return urlsplit(cleaned).scheme in SAFE_SCHEMES
    except ValueError:
        return False


def render_markdown(text: str) -> Markup:
    """Markdown -> HTML with raw HTML escaped and unsafe URLs removed."""
    md = markdown.Markdown(extensions=["sane_lists", "tables", "fenced_code"])
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_UrlSanitizer(md), "url_sanitizer", 0)
    return Markup(md.convert(text))
