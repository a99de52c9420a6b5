"""Who is asking: the process's services behind a request, and the client's real address.

The client address is the TCP peer unless that peer is a trusted proxy (``TRUSTED_PROXIES``);
then it is the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy, so a
client cannot spoof an address by sending the header itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from quart import current_app, g, has_websocket_context, request, websocket
from quart.wrappers import BaseRequestWebsocket

from realtube_push.logs import address_hash
from realtube_push.services import Services

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def services() -> Services:
    """The running process's services (what the app's composition installed)."""
    svc: Services = current_app.extensions["realtube"]
    return svc


def _incoming() -> BaseRequestWebsocket:
    """The current HTTP request or WebSocket handshake (both carry address and headers)."""
    # ``request`` and ``websocket`` are proxies typed as their concrete classes; both are
    # BaseRequestWebsocket, which is all that is read here
    if has_websocket_context():
        return websocket
    return request


def client_ip() -> str:
    """The real client address of this request (see module docstring)."""
    cached: str | None = g.get("client_ip")
    if cached is not None:
        return cached
    incoming = _incoming()
    ip = resolve_client_ip(
        incoming.remote_addr,
        incoming.headers.get("X-Forwarded-For", ""),
        services().settings.proxy_networks,
    )
    g.client_ip = ip
    return ip


def resolve_client_ip(peer: str | None, forwarded_for: str, proxies: Sequence[IPNetwork]) -> str:
    """The client address from the TCP peer and its ``X-Forwarded-For`` (module docstring)."""
    ip = peer or "unknown"
    if proxies and _trusted(ip, proxies):
        forwarded = [p.strip() for p in forwarded_for.split(",")]
        for hop in reversed([p for p in forwarded if p]):
            ip = hop
            if not _trusted(hop, proxies):
                break
    return ip


def _trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in net for net in proxies)


def ip_hash() -> str:
    """Salted hash of the client address: what logs and ``ip_hashes`` hold instead of an IP."""
    cached: str | None = g.get("ip_hash")
    if cached is None:
        salt = services().settings.ip_hash_salt.get_secret_value().encode()
        cached = address_hash(salt, client_ip())
        g.ip_hash = cached
    return cached
