"""The CAI report: every intermediate text of a run on one HTML page (escaped; no scripts).

Supervised stage: each prompt's first response, then per revision round the principle drawn, the
critique and the revision. RL stage: each prompt's two responses, the feedback question, both
orders' probabilities and the label. The numbers on top come from the stage markers.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rlhfkit.data.records import prompt_text
from rlhfkit.files import write_text_atomic

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;margin:.2rem 0}"
    ".card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}"
    ".muted{color:#666;font-size:.9em}td,th{padding:.2rem .6rem;text-align:left}"
)


def _pre(label: str, text: str) -> str:
    return f'<div class="muted">{html.escape(label)}</div><pre>{html.escape(text)}</pre>'


def _trace_card(i: int, t: dict[str, Any]) -> str:
    parts = [
        f'<div class="card"><b>#{i}</b>',
        _pre("prompt", prompt_text(t["prompt"])),
        _pre("response", t["response"]),
    ]
    for n, s in enumerate(t["steps"], 1):
        parts += [
            _pre(f"critique request {n} (principle {s['principle']})", s["critique_request"]),
            _pre(f"critique {n}", s["critique"]),
            _pre(f"revision request {n}", s["revision_request"]),
            _pre(f"revision {n}" + (" (empty: previous reply kept)" if s["kept_previous"] else ""), s["revision"]),
        ]
    return "".join(parts) + "</div>"


def _label_card(i: int, r: dict[str, Any]) -> str:
    parts = [
        f'<div class="card"><b>#{i}</b>',
        _pre("prompt", prompt_text(r["prompt"])),
        _pre("response a", r["a"]),
        _pre("response b", r["b"]),
    ]
    if r["label"] == "identical":
        parts.append('<div class="muted">identical responses: not judged</div>')
    else:
        parts.append(_pre(f"feedback principle {r['principle']}", r["question"]))
        if r["p_forward"] == r["p_reverse"]:  # scored alone (judge.compare=scores): one probability
            asked = f"P(a better) {r['p_first']:.3f} from the two replies' scores"
        else:
            asked = (
                f"P(a better): shown first {r['p_forward']:.3f}, shown second {r['p_reverse']:.3f}, "
                f"mean {r['p_first']:.3f}; orders {'flipped' if r['flipped'] else 'agree'}"
            )
        parts.append(f'<div class="muted">{asked}; label: {html.escape(str(r["label"]))}</div>')
    return "".join(parts) + "</div>"


def write_cai_report(
    out: Path, traces: list[dict[str, Any]], labels: list[dict[str, Any]], summary: dict[str, Any]
) -> Path:
    """Write ``out/report.html``; returns its path."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
        for k, v in summary.items()
    )
    body = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Constitutional AI: {html.escape(str(out))}</title>",
        f"<style>{STYLE}</style></head><body><h1>Constitutional AI run</h1><table>{rows}</table>",
        f"<h2>Supervised stage: critiques and revisions ({len(traces)} prompts)</h2>",
        *(_trace_card(i, t) for i, t in enumerate(traces)),
        f"<h2>RL stage: AI preferences ({len(labels)} prompts)</h2>",
        *(_label_card(i, r) for i, r in enumerate(labels)),
        "</body></html>",
    ]
    path = out / "report.html"
    write_text_atomic(path, "\n".join(body))
    return path
