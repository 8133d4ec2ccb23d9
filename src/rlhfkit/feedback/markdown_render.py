"""Safe Markdown for project guidelines.

Guidelines are written by admins, but rendered to every annotator, so they get no more trust than
any other input. Two steps, neither of them hand-written checks on the raw text:

1. Python-Markdown renders the text with its raw-HTML processors removed, so HTML typed into the
   Markdown is shown as text.
2. nh3 (the Rust `ammonia` sanitizer) parses that HTML as a browser would (html5ever), so character
   references are decoded first, and keeps only `ALLOWED_TAGS`, `ALLOWED_ATTRIBUTES` and URLs of
   `URL_SCHEMES`. ``[x](&#106;avascript:...)`` therefore loses its URL: a check on the raw text read
   the scheme as ``&#106;avascript`` (not a scheme at all) and let the link through live.
"""

from __future__ import annotations

import markdown
import nh3
from markupsafe import Markup

ALLOWED_TAGS = frozenset(
    {"a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i"}
    | {"img", "li", "ol", "p", "pre", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"}
)
"""What Markdown (with tables and fenced code) produces; everything else is dropped, content kept."""

ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}}
"""Attributes kept per tag (no event handlers, no style, no class)."""

URL_SCHEMES = frozenset({"http", "https", "mailto"})
"""URL schemes kept in href and src (relative URLs are kept too)."""


def sanitize_html(html: str) -> str:
    """`html` reduced to the allow-lists above (links get rel="noopener noreferrer nofollow")."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def render_markdown(text: str) -> Markup:
    """Markdown -> HTML with raw HTML escaped, then sanitized by `sanitize_html`."""
    md = markdown.Markdown(extensions=["sane_lists", "tables", "fenced_code"])
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return Markup(sanitize_html(md.convert(text)))
