"""The contract's single error shape, and the handlers that make every failure use it.

``{"error": {"code": "RATE_LIMITED", "message": "...", "retryAfter": 45}}``. A malformed
request always ends here as a 4xx: framework errors (bad JSON, wrong method, body too large),
schema validation errors and our own ``ApiError`` are all translated; anything unexpected
becomes a logged 500 ``INTERNAL_ERROR`` that leaks no detail.
"""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import ValidationError
from pydantic_core import PydanticCustomError
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError
from werkzeug.exceptions import HTTPException

log = structlog.get_logger("realtube.api")

_HTTP_CODES = {
    400: "INVALID_FIELD",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "INVALID_PARAM",
    413: "PAYLOAD_TOO_LARGE",
    415: "INVALID_FIELD",
    429: "RATE_LIMITED",
}


# The codes a validation rule may answer with itself (see ``refuse``).
CONTRACT_CODES = frozenset(
    {"INVALID_FIELD", "INVALID_CATEGORY", "INVALID_PREFIX", "MISSING_PARAM", "INVALID_PARAM"}
)


class QueryValidationError(RequestSchemaValidationError):
    """A query string that breaks its route's rules (answered 400 in the contract's format)."""


def refuse(code: str, message: str) -> PydanticCustomError:
    """A pydantic validation error that answers with ``code`` (one of ``CONTRACT_CODES``) and
    ``message`` instead of the generic code for the field."""
    return PydanticCustomError(code, "{message}", {"message": message})


class ApiError(Exception):
    """An error the client caused, with its contract code and HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        """The error as the contract's JSON document."""
        return error_document(self.code, self.message, retry_after=self.retry_after)


def error_document(code: str, message: str, *, retry_after: int | None = None) -> dict[str, Any]:
    """``{"error": {...}}`` in the contract's error format."""
    body: dict[str, Any] = {"code": code, "message": message}
    if retry_after is not None:
        body["retryAfter"] = retry_after
    return {"error": body}


def error_response(
    status: int, code: str, message: str, *, retry_after: int | None = None
) -> Response:
    """A response in the contract's error format."""
    response = jsonify(error_document(code, message, retry_after=retry_after))
    response.status_code = status
    return response


def describe_validation(error: ValidationError, *, query: bool = False) -> tuple[str, str]:
    """(code, message) for a pydantic error of a body (or, with ``query``, a query string).

    A rule that names its contract code (``refuse``) answers with it; otherwise a
    wrong body ``category`` is ``INVALID_CATEGORY``, anything else ``INVALID_FIELD`` (and
    ``INVALID_PARAM`` for a query parameter).
    """
    first = error.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    if first["type"] in CONTRACT_CODES:
        return first["type"], first["msg"]
    if query:
        if first["type"] == "missing":
            return "INVALID_FIELD", f"Missing query parameter '{field}'"
        return "INVALID_PARAM", f"Invalid query parameter '{field}': {first['msg']}"
    if first["loc"] and first["loc"][-1] == "category" and first["type"] != "missing":
        return "INVALID_CATEGORY", f"Unknown category: {first.get('input')!r}"
    if first["type"] == "missing":
        return "INVALID_FIELD", f"Missing field '{field}'"
    if first["type"] == "extra_forbidden":
        return "INVALID_FIELD", f"Unknown field '{field}'"
    return "INVALID_FIELD", f"Invalid field '{field}': {first['msg']}"


def register(app: Quart) -> None:
    """Install the handlers on ``app``."""

    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, retry_after=exc.retry_after)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(exc: RequestSchemaValidationError) -> Response:
        if isinstance(exc.validation_error, ValidationError):
            query = isinstance(exc, QuerystringValidationError | QueryValidationError)
            code, message = describe_validation(exc.validation_error, query=query)
        else:
            code, message = "INVALID_FIELD", "The request body must be a JSON object"
        return error_response(400, code, message)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            return error_response(413, "PAYLOAD_TOO_LARGE", "Request body is too large")
        if status == 404:
            return error_response(404, "NOT_FOUND", "Not found")
        if status == 405:
            return error_response(405, "INVALID_PARAM", "Method not allowed")
        if status < 500:
            return error_response(
                status,
                _HTTP_CODES.get(status, "INVALID_FIELD"),
                "Malformed request: the body must be valid JSON in UTF-8",
            )
        log.error("http_error", status=status)
        return error_response(500, "INTERNAL_ERROR", "Internal error")

    @app.errorhandler(UnicodeDecodeError)
    async def _bad_encoding(_: UnicodeDecodeError) -> Response:
        return error_response(400, "INVALID_FIELD", "The request body must be UTF-8")

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        log.error("unhandled_error", exc_info=exc)
        return error_response(500, "INTERNAL_ERROR", "Internal error")
