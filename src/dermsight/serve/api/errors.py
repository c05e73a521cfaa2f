"""Every error the API returns has one JSON shape: ``{"error": {"code", "message", "field"}}``.

Handlers here turn :class:`~dermsight.errors.ApiError` (raised by the routers and by the tracking
service), dermsight's :class:`~dermsight.errors.DermsightError`,
FastAPI's request validation errors and HTTP errors into that shape. Unexpected exceptions
become a 500 whose body says nothing about the request (and never echoes it).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dermsight.errors import ApiError, ConfigError, DataError, DermsightError

log = logging.getLogger("dermsight.serve")


def api_response(exc: ApiError) -> JSONResponse:
    """The JSON answer to ``exc``: its body, status and headers."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return api_response(ApiError(status, code, message, field, headers))


def image_error(exc: DataError, field: str) -> ApiError:
    """Map a decode failure (empty, truncated, not an image, too many pixels) to an ApiError."""
    message = str(exc)
    lowered = message.lower()
    if "pixel" in lowered or "bomb" in lowered:
        return ApiError(413, "image_too_large", message, field)
    if "empty" in lowered or "0 bytes" in lowered:
        return ApiError(422, "empty_file", message, field)
    return ApiError(422, "invalid_image", message, field)


def _location(loc: tuple) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return api_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        field = _location(tuple(first.get("loc", ())))
        msg = first.get("msg", "invalid request")
        if first.get("type") == "missing":
            msg = f"'{field}' is required"
        elif field:
            msg = f"{field}: {msg}"
        return error_response(422, "validation_error", msg, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), None,
                              getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        return error_response(422, "invalid_input", str(exc), None)

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        return error_response(422, "invalid_input", str(exc), None)

    @app.exception_handler(DermsightError)
    async def _dermsight(request: Request, exc: DermsightError) -> JSONResponse:
        return error_response(422, "invalid_input", str(exc), None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The type only: a message could quote request content.
        log.error("internal error on %s %s: %s", request.method, request.url.path,
                  type(exc).__name__)
        return error_response(500, "internal_error", "internal server error", None)
