"""The OpenAPI document: complete, readable, and the one checked in (no server needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from realtube_push.app import create_routes, openapi_document

REPO = Path(__file__).resolve().parents[2]
# the document and its UI describe the API; they are not part of it
UNDOCUMENTED = {"/openapi.json", "/docs", "/docs/<name>"}


@pytest.fixture(scope="module")
def document() -> dict:
    return json.loads(openapi_document())


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def strings(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v, key)
    elif isinstance(value, str):
        yield key, value


def test_the_checked_in_openapi_json_is_what_the_code_describes():
    assert (REPO / "openapi.json").read_bytes() == openapi_document(), (
        "openapi.json is stale: run `python tools/openapi.py`"
    )


def test_the_check_command_says_the_file_is_up_to_date():
    result = subprocess.run(
        [sys.executable, "tools/openapi.py", "--check"], cwd=REPO, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr


def test_every_route_of_the_app_is_in_the_document(document):
    app = create_routes()
    routes = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule not in UNDOCUMENTED
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (name.split(" ", 1)[0], name.split(" ", 1)[1].replace("{", "<").replace("}", ">"))
        for name, _ in operations(document)
    }
    as_rules = {(method, rule.replace("<path:", "<")) for method, rule in routes}

    assert documented == as_rules


def test_every_operation_declares_a_success_and_its_errors_in_the_error_shape(document):
    for name, operation in operations(document):
        statuses = {int(s) for s in operation["responses"]}
        assert any(s < 400 for s in statuses), name
        for status, response in operation["responses"].items():
            if int(status) >= 400 and name != "GET /health/ready":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (name, status)
                assert response["description"].startswith("`"), (name, status)


def test_every_error_code_of_the_contract_is_in_the_error_model(document):
    codes = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]

    assert set(codes) == {
        "INVALID_FIELD",
        "INVALID_CATEGORY",
        "INVALID_PREFIX",
        "MISSING_PARAM",
        "INVALID_PARAM",
        "NOT_FOUND",
        "RATE_LIMITED",
        "OVERLOADED",
        "PAYLOAD_TOO_LARGE",
        "UNAUTHORIZED",
        "INTERNAL_ERROR",
    }


def test_routes_declare_their_bodies_and_query_parameters(document):
    def query(name: str) -> set[str]:
        path = document["paths"][name.split(" ")[1]][name.split(" ")[0].lower()]
        return {p["name"] for p in path.get("parameters", []) if p["in"] == "query"}

    assert query("GET /api/videos/{prefix}") == {"categories", "minScore"}
    assert query("GET /api/videos") == {"videoId"}
    assert query("GET /api/sync/delta") == {"cursor", "epoch", "since"}
    assert query("GET /api/database/export") == {"format"}
    assert query("GET /api/admin/auto-flagged") == {"hours", "limit"}
    assert query("GET /api/live/sse") == {"epoch", "seq", "buckets", "channels"}
    for name in ("POST /api/votes", "DELETE /api/votes", "POST /api/admin/login"):
        method, path = name.split(" ")
        assert "requestBody" in document["paths"][path][method.lower()], name


def test_admin_routes_name_the_session_cookie(document):
    for name, operation in operations(document):
        needs_session = name.split(" ")[1].startswith(("/api/admin/", "/api/live/admin"))
        needs_session = needs_session and name != "POST /api/admin/login"
        assert ("security" in operation) == needs_session, name


def test_operation_ids_are_unique(document):
    ids = [operation["operationId"] for _, operation in operations(document)]

    assert len(ids) == len(set(ids))


def test_no_raw_double_backticks_in_any_summary_or_description(document):
    for key, text in strings(document):
        if key in ("summary", "description"):
            assert "``" not in text, text
