"""The API reference at /docs (only with ``AppConfig.docs``): the OpenAPI document as plain HTML.

FastAPI's interactive pages load Swagger UI or ReDoc from a CDN, so a compromised CDN could run
code on the app's origin; this page is rendered on the server from `app.openapi()` and loads no
script at all (the app's CSP applies to it like to every other page).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rlhfkit.feedback.web.deps import optional_session

router = APIRouter(include_in_schema=False)

METHODS = ("get", "post", "put", "patch", "delete")
"""HTTP methods listed, in this order within a path."""


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per operation of an OpenAPI document, with its request body schema inlined."""
    out = []
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                op = item[method]
                body = op.get("requestBody", {}).get("content", {})
                out.append(
                    {
                        "method": method.upper(),
                        "path": path,
                        "tag": (op.get("tags") or ["other"])[0],
                        "summary": op.get("summary", ""),
                        "description": op.get("description", ""),
                        "parameters": op.get("parameters", []),
                        "body": {media: content.get("schema", {}) for media, content in body.items()},
                    }
                )
    return out


@router.get("/docs")
def docs_page(request: Request) -> Response:
    document = request.app.openapi()
    return request.app.state.templates.TemplateResponse(
        request,
        "api_docs.html",
        {
            "session": optional_session(request),
            "info": document.get("info", {}),
            "operations": operations(document),
            "schemas": document.get("components", {}).get("schemas", {}),
        },
    )
