"""Write the OpenAPI document to ``openapi.json`` (``--check``: fail when it is stale).

    python tools/openapi.py            # rewrite openapi.json from the code
    python tools/openapi.py --check    # exit 1 if openapi.json differs from the code's

The document is what every server serves at ``/openapi.json``; the test suite also compares
a running server's with the checked-in file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realtube_push.app import openapi_document

TARGET = Path(__file__).resolve().parents[1] / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    document = openapi_document()
    if args.check:
        if not TARGET.exists() or TARGET.read_bytes() != document:
            print(f"{TARGET.name} is stale: run `python tools/openapi.py`", file=sys.stderr)
            return 1
        print(f"{TARGET.name} is up to date")
        return 0
    TARGET.write_bytes(document)
    print(f"wrote {TARGET.name} ({len(document)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
