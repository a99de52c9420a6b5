"""The live client's transports, each one session at a time against a ``SessionHost``.

``for_name`` gives the transport of a name; every transport has ``name`` and
``async session(host) -> Ending`` (see ``realtube_push.client.session``). They hold no state
between sessions: cursor, heartbeat and instance live in the state machine.
"""

from __future__ import annotations

from typing import Protocol

from realtube_push.client.options import Transport
from realtube_push.client.session import Ending, SessionHost
from realtube_push.client.transports.poll import PollingTransport
from realtube_push.client.transports.sse import SSETransport
from realtube_push.client.transports.ws import WebSocketTransport


class LiveTransport(Protocol):
    """A way to follow the sync log: one ``session`` per connection."""

    name: Transport

    async def session(self, host: SessionHost) -> Ending:
        """Run one session; returns how it ended (or raises what ``ending_of`` maps)."""
        ...


def for_name(name: Transport) -> LiveTransport:
    """The transport called ``name`` (``"ws"``, ``"sse"`` or ``"poll"``)."""
    if name == "ws":
        return WebSocketTransport()
    if name == "sse":
        return SSETransport()
    return PollingTransport()


__all__ = ["LiveTransport", "PollingTransport", "SSETransport", "WebSocketTransport", "for_name"]
