"""Quart's JSON provider on orjson: every response body is serialized here (hot path)."""

from __future__ import annotations

from typing import Any

import orjson
from quart import Quart


def install(app: Quart) -> None:
    """Replace ``app.json`` (after QuartSchema set its own) with an orjson-backed subclass."""
    base = type(app.json)

    # the base is QuartSchema's provider, a class it builds per app (its ``default`` turns
    # pydantic models into JSON), so it is known only at run time
    class OrjsonProvider(base):  # type: ignore[misc, valid-type]
        def dumps(self, obj: Any, **kwargs: Any) -> str:
            option = orjson.OPT_INDENT_2 if kwargs.get("indent") else 0
            if kwargs.get("sort_keys", self.sort_keys):
                option |= orjson.OPT_SORT_KEYS
            return orjson.dumps(obj, default=self.default, option=option).decode()

        def loads(self, s: str | bytes, **kwargs: Any) -> Any:
            return orjson.loads(s)

    app.json = OrjsonProvider(app)
