"""Log lines: where they go, how they look, and what they may never hold.

Every line, the service's own (structlog) and its libraries' (Hypercorn, asyncio, through the
standard ``logging`` module), passes the same processors and leaves on stdout:

- as JSON, one object per line, when stdout is not a terminal (containers, files, pipes), or
  as a human-readable line when it is; ``LOG_FORMAT`` (``json``/``console``) overrides that.
- with the privacy rule applied by one processor, ``redact``, whatever the line says: a hex
  run longer than 32 characters (a user id; the service's own hashes are 32 long) is cut to
  its first 8 characters, and an IP address is replaced by ``ip#`` and the address's salted
  hash (the same value as the request log's ``ip_hash``). The one exception is the server's
  own listening address, logged under the key ``listen``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, Literal

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

SERVICE = "realtube-push"

LogFormat = Literal["auto", "json", "console"]

# The key under which the server logs its own listening address, which is no client's.
OWN_ADDRESS_KEY = "listen"

# One pass finds every candidate: long hex runs, IPv4, and IPv6-looking runs (validated
# before they are replaced, so times like 23:34:13 stay as they are).
_SENSITIVE = re.compile(
    r"(?P<hex>(?<![0-9A-Fa-f])[0-9A-Fa-f]{33,}(?![0-9A-Fa-f]))"
    r"|(?P<ip>(?<![\w.:])(?:"
    r"\d{1,3}(?:\.\d{1,3}){3}"
    r"|(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?:%[\w.]+)?"
    r")(?![\w.:]))"
)


def address_hash(salt: bytes, address: str) -> str:
    """The salted hash that stands for a client address in logs and ``ip_hashes``."""
    return hmac.new(salt, address.encode(), hashlib.sha256).hexdigest()[:32]


class Redactor:
    """The processor that applies the privacy rule (module docstring) to every value."""

    def __init__(self, salt: str) -> None:
        self._salt = salt.encode()

    def _replace(self, match: re.Match[str]) -> str:
        text = match.group(0)
        if match.lastgroup == "hex":
            return text[:8] + "…"
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return text
        return "ip#" + address_hash(self._salt, text)

    def clean(self, value: Any) -> Any:
        """``value`` with the rule applied to every string in it, however deeply nested."""
        if isinstance(value, str):
            return _SENSITIVE.sub(self._replace, value)
        if isinstance(value, dict):
            return {key: self.clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.clean(item) for item in value]
        return value

    def __call__(self, _: WrappedLogger, __: str, event: EventDict) -> EventDict:
        for key, value in event.items():
            if key != OWN_ADDRESS_KEY and not isinstance(value, int | float | bool | None):
                event[key] = self.clean(value)
        return event


def _add_service(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.setdefault("service", SERVICE)
    return event


def console_wanted(log_format: LogFormat) -> bool:
    """Whether lines are written for a person: ``console``, or ``auto`` on a terminal."""
    if log_format == "auto":
        return sys.stdout.isatty()
    return log_format == "console"


def configure_logging(level: str, *, log_format: LogFormat = "auto", ip_hash_salt: str) -> None:
    """Send every log line (structlog's and the standard library's) to stdout, redacted,
    as JSON or as console lines (module docstring). Call once, before anything logs."""
    console = console_wanted(log_format)
    numeric_level = logging.getLevelName(level.upper())
    stamp = (
        structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False)
        if console
        else structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    )
    redact = Redactor(ip_hash_salt)
    # the service's name tells log aggregators whose line it is; a terminal knows
    shared: list[Processor] = [structlog.processors.add_log_level, stamp]
    if not console:
        shared.append(_add_service)
    text_renderer: Processor
    if console:
        text_renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        own_renderer: Processor = text_renderer
        factory: Callable[..., Any] = structlog.PrintLoggerFactory(sys.stdout)
    else:
        text_renderer = structlog.processors.JSONRenderer(serializer=_json_text)
        # orjson renders bytes straight for the bytes logger: one line per request is on the
        # hot path
        own_renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory = structlog.BytesLoggerFactory()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.format_exc_info,
            redact,
            own_renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact,
                text_renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    # asyncio narrates at INFO; only its problems are worth a line
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def _json_text(event: MutableMapping[str, Any], **kwargs: Any) -> str:
    return orjson.dumps(event, **kwargs).decode()
