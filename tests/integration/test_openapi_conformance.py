"""Every route against the OpenAPI document it serves, with generated requests (schemathesis).

Valid and invalid requests are generated from ``/openapi.json`` for every operation, sent to
a real server, and each answer must be no 5xx, a documented status with the documented media
type, and a body that matches the documented model (errors included); a request the document
calls invalid must be refused with a 4xx. Admin routes run once without and once with an
admin session. The live streams never end, so they are left to the live-channel tests.
The operations come from the checked-in ``openapi.json`` (test_openapi_served.py checks
that a server serves exactly that).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

TOKEN = "conformance-admin-token"
pytestmark = pytest.mark.server_env(ADMIN_TOKEN=TOKEN)
REPO = Path(__file__).resolve().parents[2]
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
EXAMPLES = 25


def operations(*, admin: bool) -> list[tuple[str, str]]:
    """(method, path) of every documented operation but the never-ending live streams; with
    ``admin``, those that need the admin session (logout would end the session for the rest)."""
    document = json.loads((REPO / "openapi.json").read_text())
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            needs_session = "security" in operation
            if path.startswith("/api/live/") or (admin and not needs_session):
                continue
            if admin and path == "/api/admin/logout":
                continue
            found.append((method.upper(), path))
    return found


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


@pytest.fixture(scope="module")
def admin_cookie(server) -> str:
    r = httpx.post(f"{server.url}/api/admin/login", json={"token": TOKEN}, timeout=10)
    assert r.status_code == 200, r.text
    return r.cookies["rt_admin"]


def exercise(api_schema, method: str, path: str, *, negative: bool = True, **call: object) -> None:
    """Generated valid (and invalid) requests to one operation, each answer checked."""
    operation = api_schema[path][method]
    modes = (
        [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
        if negative
        else [GenerationMode.POSITIVE]
    )
    cases = st.one_of(*(operation.as_strategy(mode) for mode in modes))

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        case.call_and_validate(checks=CHECKS, allow_redirects=False, timeout=30, **call)

    run()


@pytest.mark.parametrize(
    ("method", "path"), operations(admin=False), ids=[" ".join(o) for o in operations(admin=False)]
)
def test_every_route_answers_as_its_openapi_document_says(api_schema, method, path):
    exercise(api_schema, method, path)


@pytest.mark.parametrize(
    ("method", "path"), operations(admin=True), ids=[" ".join(o) for o in operations(admin=True)]
)
def test_every_admin_route_answers_as_documented_with_a_session(
    api_schema, admin_cookie, server, method, path
):
    # valid requests only: an invalid one may lack the cookie, which this run always sends
    exercise(
        api_schema,
        method,
        path,
        negative=False,
        cookies={"rt_admin": admin_cookie},
        # the admin API refuses cross-origin state changes; the dashboard's page sends this
        headers={"Origin": server.url},
    )
