"""The Markdown sanitizer (issue 24): no live script URL or raw HTML, however the scheme is spelled."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from rlhfkit.feedback.markdown_render import URL_SCHEMES, render_markdown


class _Urls(HTMLParser):
    """Every href/src as a browser reads it (HTMLParser decodes character references in values)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("href", "src")]
        assert not [k for k, _ in attrs if k.startswith("on") or k == "style"], attrs


def _live_schemes(html: str) -> set[str]:
    parser = _Urls()
    parser.feed(html)
    # The WHATWG URL parser removes tabs and newlines anywhere and trims C0 controls and spaces at
    # both ends; a space inside the scheme makes the URL relative.
    cleaned = [
        "".join(ch for ch in url if ch not in "\t\n\r").strip("".join(map(chr, range(33)))) for url in parser.urls
    ]
    return {urlsplit(url.lower()).scheme for url in cleaned}


def _encode(ch: str, how: int) -> str:
    return [ch, ch.upper(), f"&#{ord(ch)};", f"&#x{ord(ch):x};", f"&#X{ord(ch):X};", ch + "&#x09;", ch + "\t"][how]


@st.composite
def spelled_scheme(draw: st.DrawFn) -> str:
    """'javascript', 'vbscript' or 'data' with each letter in any case, entity-encoded or split by a tab."""
    word = draw(st.sampled_from(["javascript", "vbscript", "data"]))
    hows = draw(st.lists(st.integers(0, 6), min_size=len(word), max_size=len(word)))
    colon = draw(st.sampled_from([":", "&#58;", "&colon;", "&#x3A;"]))
    return "".join(_encode(c, h) for c, h in zip(word, hows, strict=True)) + colon


@settings(max_examples=300, deadline=None, derandomize=True)
@given(scheme=spelled_scheme(), shape=st.sampled_from(["[x]({u})", "![x]({u})", "<{u}>", "[x][r]\n\n[r]: {u}"]))
def test_no_script_url_survives_any_spelling(scheme: str, shape: str) -> None:
    html = str(render_markdown(shape.format(u=scheme + "alert(1)")))
    assert _live_schemes(html) <= {"", *URL_SCHEMES}, html


def test_entity_encoded_and_mixed_case_schemes_lose_their_url() -> None:
    for url in [
        "&#106;avascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "java&#x09;script:alert(1)",
        "&#x6A;ava&#x73;cript&colon;x",
    ]:
        html = str(render_markdown(f"[click]({url})"))
        assert "href" not in html and "click" in html, html


def test_safe_markdown_is_kept_and_raw_html_is_text() -> None:
    html = str(
        render_markdown("**b** <b onclick=x>raw</b> <script>alert(1)</script>\n\n[ok](https://x.org) [rel](/queue)")
    )
    assert "<strong>b</strong>" in html and "&lt;b onclick=x&gt;" in html and "&lt;script&gt;" in html
    assert 'href="https://x.org"' in html and 'href="/queue"' in html and 'rel="noopener noreferrer nofollow"' in html


def test_allow_list_drops_unknown_tags_and_attributes() -> None:
    from rlhfkit.feedback.markdown_render import sanitize_html

    cleaned = sanitize_html('<p style="x" onclick="y">a<iframe src="https://x"></iframe><img src="x" onerror="z"></p>')
    parser = _Urls()
    parser.feed(cleaned)
    assert set(parser.tags) <= {"p", "img"} and "onerror" not in cleaned and "style" not in cleaned
