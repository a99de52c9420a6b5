"""The live channel: Redis bus, local hub, per-connection sessions, WS and SSE transports."""
