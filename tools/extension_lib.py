"""Copy the live client into the extension: ``clients/js`` -> ``clients/extension/lib``.

    python tools/extension_lib.py            # (re)fill clients/extension/lib
    python tools/extension_lib.py --check    # exit 1 if lib/ is missing or differs

The module has one home, ``clients/js/``; the extension loads it from ``lib/`` because an
extension's URLs reach only files inside its own folder. A copy rather than a committed
symlink: Debian's Chromium does follow a symlink out of an unpacked extension (tried), but a
packed extension or a store zip carries no symlinks, and git on Windows checks them out as
plain text files. ``lib/`` is generated (git-ignored): run this after cloning and after
changing the client. The browser tests run it themselves.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "clients" / "js"
TARGET = REPO / "clients" / "extension" / "lib"
# what the module needs at run time: itself and its vendored ES modules (+ their licences)
FILES = ["realtube-live.js"]
VENDOR_SUFFIXES = (".mjs", ".LICENSE")


def wanted() -> list[Path]:
    """Paths (relative to ``clients/js``) the extension needs."""
    vendor = sorted(
        p.relative_to(SOURCE)
        for p in (SOURCE / "vendor").iterdir()
        if p.name.endswith(VENDOR_SUFFIXES)
    )
    return [Path(f) for f in FILES] + vendor


def fill(target: Path = TARGET) -> None:
    """Make ``target`` an exact copy of what the extension needs (stale files removed)."""
    if target.exists():
        shutil.rmtree(target)
    for rel in wanted():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SOURCE / rel, target / rel)


def up_to_date(target: Path = TARGET) -> bool:
    """Whether ``target`` holds exactly the current files."""
    files = wanted()
    present = (
        {p.relative_to(target) for p in target.rglob("*") if p.is_file()}
        if target.exists()
        else set()
    )
    if present != set(files):
        return False
    return all(filecmp.cmp(SOURCE / rel, target / rel, shallow=False) for rel in files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of copying")
    args = parser.parse_args(argv)
    if args.check:
        if not up_to_date():
            print(
                "clients/extension/lib is stale: run `python tools/extension_lib.py`",
                file=sys.stderr,
            )
            return 1
        print("clients/extension/lib is up to date")
        return 0
    fill()
    print(f"copied {len(wanted())} files to {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
