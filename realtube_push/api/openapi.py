"""The OpenAPI document: how routes declare their answers, and how the document is built.

Routes declare what they take and answer with quart-schema's decorators (``validate_request``
for bodies, ``document_querystring`` for query strings, ``document_headers``) and with
``answers`` below, which names the success models and every error status with what causes
it (all errors share ``ErrorOut``, the one error shape). ``path_params`` gives path
parameters their rules. Nothing here validates an answer at run time: answers are built by
the handlers, and the test suite checks a running server against this document.

``ApiDocument`` (the quart-schema provider) adds what quart-schema leaves out: response
headers (rate limits, ``Retry-After``), media types other than JSON (Prometheus text, event
streams, files, MessagePack), path parameter rules, the admin session cookie as a security
scheme, and one component per model (referenced, not repeated inline). Text is Markdown:
docstrings' ``double backticks`` become single ones.

Promise: ``document(app)`` is a pure function of the routes, so the checked-in
``openapi.json`` (written by ``tools/openapi.py``) equals what every server serves.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter
from quart import Quart
from quart_schema import Info, OpenAPIProvider, QuartSchema, document_response
from werkzeug.routing.rules import Rule

from realtube_push import __version__
from realtube_push.api.responses import ErrorOut, Media

F = TypeVar("F", bound=Callable[..., Any])

ERRORS_ATTRIBUTE: Final = "_realtube_errors"
LIMITED_ATTRIBUTE: Final = "_realtube_rate_limited"
PATH_PARAMS_ATTRIBUTE: Final = "_realtube_path_params"
ADMIN_ATTRIBUTE: Final = "_realtube_admin"

ADMIN_SCHEME: Final = "adminSession"
REF_TEMPLATE: Final = "#/components/schemas/{model}"

TITLE: Final = "RealTube push API"
DESCRIPTION: Final = """\
The REST API of RealTube push: community votes on AI-generated videos, their scores, the
sync log that keeps extension caches in step, health, export and the admin dashboard's API.

The contract, in prose, is docs/api.md in the repository; the live channel's wire protocol
(WebSocket at `/api/live/ws`, which OpenAPI cannot describe, and SSE) is docs/protocol.md.
Every error answer has one shape, `{"error": {"code", "message", "retryAfter"?}}`."""

RATE_LIMIT_HEADERS: Final = {
    "X-RateLimit-Limit": "requests allowed in the current window",
    "X-RateLimit-Remaining": "requests left in the current window",
    "X-RateLimit-Reset": "seconds until the window ends",
}


def answers(
    success: Mapping[int, type[Any]],
    errors: Mapping[int, str] | None = None,
    *,
    rate_limited: bool = False,
    admin: bool = False,
) -> Callable[[F], F]:
    """Declare a route's answers: a model per success status, and for each error status what
    causes it (every error body is ``ErrorOut``). ``rate_limited`` adds the rate-limit
    headers (and a 429); ``admin`` marks the route as needing the admin session cookie (and
    adds its 401)."""
    causes = dict(errors or {})
    if rate_limited:
        causes.setdefault(429, "`RATE_LIMITED`: too many requests; see `Retry-After`.")
    if admin:
        causes.setdefault(401, "`UNAUTHORIZED`: no valid admin session cookie.")

    def decorate(func: F) -> F:
        for status, model in success.items():
            func = document_response(model, status)(func)
        for status in causes:
            func = document_response(ErrorOut, status)(func)
        setattr(func, ERRORS_ATTRIBUTE, causes)
        setattr(func, LIMITED_ATTRIBUTE, rate_limited)
        setattr(func, ADMIN_ATTRIBUTE, admin)
        return func

    return decorate


def path_params(**schemas: Mapping[str, Any]) -> Callable[[F], F]:
    """Declare the rules of a route's path parameters (JSON Schema, by parameter name)."""

    def decorate(func: F) -> F:
        setattr(func, PATH_PARAMS_ATTRIBUTE, {name: dict(s) for name, s in schemas.items()})
        return func

    return decorate


def _markdown(text: str) -> str:
    """Docstring text as Markdown: ``x`` (reStructuredText literal) becomes `x`."""
    return text.replace("``", "`")


class ApiDocument(OpenAPIProvider):
    """quart-schema's provider, completed (see the module docstring)."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document["info"]["description"] = DESCRIPTION
        document.setdefault("components", {})["securitySchemes"] = {
            ADMIN_SCHEME: {
                "type": "apiKey",
                "in": "cookie",
                "name": "rt_admin",
                "description": "The admin session cookie that `POST /api/admin/login` sets.",
            }
        }
        document["paths"] = dict(sorted(document["paths"].items()))
        cleaned: dict[str, Any] = _clean(document)
        return cleaned

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        path_rules: dict[str, dict[str, Any]] = getattr(func, PATH_PARAMS_ATTRIBUTE, {})
        causes: dict[int, str] = getattr(func, ERRORS_ATTRIBUTE, {})
        limited: bool = getattr(func, LIMITED_ATTRIBUTE, False)
        admin: bool = getattr(func, ADMIN_ATTRIBUTE, False)
        for path_item in paths.values():
            for method, operation in list(path_item.items()):
                operation = {**operation, "parameters": [dict(p) for p in operation["parameters"]]}
                operation["responses"] = {
                    str(status): dict(response)
                    for status, response in sorted(operation["responses"].items())
                }
                path_item[method] = operation
                description = operation.pop("description", "").strip()
                if description:
                    operation["description"] = description
                for parameter in operation["parameters"]:
                    if parameter["in"] == "path" and parameter["name"] in path_rules:
                        parameter["schema"] = path_rules[parameter["name"]]
                if not operation["parameters"]:
                    del operation["parameters"]
                for status, cause in causes.items():
                    operation["responses"][str(status)]["description"] = cause
                if limited:
                    for status, response in operation["responses"].items():
                        response["headers"] = _limit_headers(int(status))
                if admin:
                    operation["security"] = [{ADMIN_SCHEME: []}]
        return paths, components

    def build_querystring_parameters(
        self, model: type[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters, definitions = super().build_querystring_parameters(model)
        return _parameters(parameters, model), definitions

    def build_headers_parameters(
        self, model: type[Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters, definitions = super().build_headers_parameters(model)
        return _parameters(parameters, model), definitions

    def build_response_object(
        self, model: type[Any], headers_model: type[Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        description = inspect.getdoc(model) or ""
        if isinstance(model, type) and issubclass(model, Media):
            content = {
                media: {"schema": {"type": "string"}}
                if media.startswith("text/")
                else {"schema": {"type": "string", "format": "binary"}}
                for media in model.MEDIA_TYPES
            }
            response: dict[str, Any] = {"description": description}
            if content:
                response["content"] = content
            return response, {}
        name, schema, definitions = _component(model)
        media_types = getattr(model, "MEDIA_TYPES", ("application/json",))
        content = {
            media: {"schema": {"$ref": REF_TEMPLATE.format(model=name)}} for media in media_types
        }
        return {"description": description, "content": content}, {**definitions, name: schema}


def _parameters(parameters: list[dict[str, Any]], model: type[Any]) -> list[dict[str, Any]]:
    """Parameters as a reader wants them: required where the model requires them (quart-schema
    looks for that in the wrong place), without pydantic's titles and null defaults."""
    required = set(TypeAdapter(model).json_schema().get("required", []))
    cleaned = []
    for parameter in parameters:
        schema = {
            key: value
            for key, value in parameter["schema"].items()
            if key != "title" and not (key == "default" and value is None)
        }
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        entry = {**parameter, "schema": schema}
        if parameter["in"] == "query":
            entry["required"] = parameter["name"] in required
        cleaned.append(entry)
    return cleaned


def _component(model: type[Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(name, schema, nested definitions) of a response model, as serialized."""
    schema = TypeAdapter(model).json_schema(ref_template=REF_TEMPLATE, mode="serialization")
    definitions = schema.pop("$defs", {})
    name = model.__name__ if isinstance(model, type) else re.sub(r"\W", "", str(model))
    if isinstance(model, type) and issubclass(model, BaseModel):
        schema.setdefault("title", name)
    return name, schema, definitions


def _limit_headers(status: int) -> dict[str, Any]:
    headers: dict[str, Any] = {
        name: {"description": what, "schema": {"type": "integer"}}
        for name, what in RATE_LIMIT_HEADERS.items()
    }
    if status == 429:
        headers["Retry-After"] = {
            "description": "seconds to wait before trying again",
            "schema": {"type": "integer"},
        }
    return headers


def _clean(value: Any) -> Any:
    """The document with Markdown text and without empty operation parts."""
    if isinstance(value, dict):
        return {
            key: _markdown(item)
            if key in ("summary", "description") and isinstance(item, str)
            else _clean(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def install(app: Quart) -> None:
    """Set up quart-schema on ``app`` with this document's provider. The document and its
    UI are served by ``api/docs.py``, not by quart-schema's own (CDN-loading) pages."""
    QuartSchema(
        app,
        info=Info(title=TITLE, version=__version__),
        openapi_path=None,
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        openapi_provider_class=ApiDocument,
    )


def document(app: Quart) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes."""
    provider: OpenAPIProvider = app.extensions["QUART_SCHEMA"].openapi_provider
    return provider.schema()


def render(doc: Mapping[str, Any]) -> bytes:
    """The document as served and checked in: JSON, keys sorted, indented, final newline."""
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
