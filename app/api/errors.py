"""The contract's error body on the webhook paths, for the errors the framework raises itself.

Starlette answers a wrong method (405) and FastAPI a dependency's ``HTTPException`` with
``{"detail": ...}``; on the job webhook and ``POST /livekit/webhook`` every answer must be the
contract's ``{"accepted": false, "error": ...}`` (PROTOCOL.md §1). Other paths keep FastAPI's
body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


def contract_error_response(description: str, *, field_errors: bool = False) -> dict[str, Any]:
    """An OpenAPI response whose body is the contract's ``{"accepted": false, "error": ...}``."""
    properties: dict[str, Any] = {
        "accepted": {"type": "boolean", "const": False},
        "error": {"type": "string"},
    }
    if field_errors:
        properties["errors"] = {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        }
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": properties, "required": ["accepted"]}
            }
        },
    }


def detail_response(description: str) -> dict[str, Any]:
    """An OpenAPI response whose body is FastAPI's ``{"detail": ...}``."""
    schema = {"type": "object", "properties": {"detail": {"type": "string"}}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def contract_errors(app: FastAPI, paths: Iterable[str]) -> None:
    """Answer framework errors on ``paths`` with the contract's JSON body."""
    contract_paths = frozenset(paths)

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path not in contract_paths:
            return await http_exception_handler(request, exc)
        error = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 405:
            error = "method not allowed (POST only)"
        return JSONResponse(
            {"accepted": False, "error": error},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    app.add_exception_handler(StarletteHTTPException, handler)
