"""The OpenAPI description of the live channel's HTTP routes, which ``push/`` serves.

``push/`` does not import the API layer, so its routes are described here and the
description is attached to them by endpoint name once every blueprint is registered
(``describe``). A renamed endpoint fails loudly here, and the test that every route declares
its answers fails too. The WebSocket route is served beside Quart and OpenAPI cannot
describe it: docs/protocol.md does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from quart import Quart
from quart_schema import document_querystring

from realtube_push.api.openapi import answers
from realtube_push.api.queries import LiveSseQuery
from realtube_push.api.responses import AdminStatsOut, EventStream

LIVE_LIMITS: Final = {
    403: "`UNAUTHORIZED`: the `Origin` is not in `CORS_ORIGINS`.",
    429: "`RATE_LIMITED`: this address already holds `LIVE_MAX_CONNECTIONS_PER_IP` live "
    "connections (counted across every instance).",
    503: "`INTERNAL_ERROR`: the instance is shutting down; connect to another.",
}
# what a live channel route (not the operator's dashboard stream) may also answer with 503
SHEDDING: Final = (
    "`OVERLOADED` (with `Retry-After`, seconds): the instance sheds new live connections "
    "(`LIVE_ACCEPT_RATE`, `LIVE_MAX_CONNECTIONS`); try again after that wait, on the same "
    "transport. "
)

# endpoint -> what to attach to its view function
DESCRIPTIONS: Final[dict[str, tuple[Callable[[Any], Any], ...]]] = {
    "live_sse.live_sse": (
        document_querystring(LiveSseQuery),
        answers(
            {200: EventStream},
            {
                400: "`INVALID_PARAM`: `seq`/`Last-Event-ID` not a non-negative integer, "
                "`epoch` without `seq` (or the reverse) or over 64 characters, bad `buckets` "
                "or `channels`.",
                **LIVE_LIMITS,
                503: SHEDDING + LIVE_LIMITS[503],
            },
        ),
    ),
    "live_admin.live_admin": (
        answers(
            {200: EventStream},
            {
                403: "`UNAUTHORIZED`: the request's `Origin` names another host.",
                429: LIVE_LIMITS[429],
                503: LIVE_LIMITS[503],
            },
            admin=True,
        ),
    ),
    "live_admin.stats": (answers({200: AdminStatsOut}, admin=True),),
}


def describe(app: Quart) -> None:
    """Attach the descriptions to ``app``'s registered live routes."""
    for endpoint, decorators in DESCRIPTIONS.items():
        func = app.view_functions[endpoint]
        for decorate in decorators:
            func = decorate(func)
        app.view_functions[endpoint] = func
