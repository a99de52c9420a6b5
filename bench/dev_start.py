"""How long a new user waits: ``realtube-push dev`` from launch to ``/health/ready`` healthy.

``cold``: a fresh ``--data-dir`` (initdb, migrations, a generated admin token and salt), what a
new user's first command costs. ``warm``, the baseline measured in the same run: the same
data dir started again (PostgreSQL's files exist, nothing to migrate). Each is run
``--repeat`` times, and the medians and their ratio printed.

The machine is shared with other engineers' test suites: absolute seconds are noisy, the
ratio less so. Run it on a quiet machine to check a claim about seconds.

    python -m bench.dev_start --repeat 3
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import REPO

READY_TIMEOUT_SECONDS = 180


def time_to_ready(data_dir: Path, log: Path) -> float:
    """Seconds from launching ``dev`` on ``data_dir`` to a healthy readiness answer."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    with log.open("ab") as out:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "realtube_push", "dev", "--data-dir", str(data_dir),
             "--port", "0"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        return _wait_healthy(process, log, start) - start
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _wait_healthy(process: subprocess.Popen[bytes], log: Path, start: float) -> float:
    url = None
    while time.monotonic() - start < READY_TIMEOUT_SECONDS:
        if process.poll() is not None:
            raise RuntimeError(f"dev exited with {process.returncode}:\n{log.read_text()}")
        if url is None:
            found = re.search(r"API:\s+(http://[^/\s]+)/api/", log.read_text(errors="replace"))
            url = found.group(1) if found else None
        else:
            try:
                r = httpx.get(f"{url}/health/ready", timeout=2)
                if r.status_code == 200 and r.json()["status"] == "healthy":
                    return time.monotonic()
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"dev not healthy within {READY_TIMEOUT_SECONDS}s:\n{log.read_text()}")


def main() -> None:
    """Print cold and warm start times, their medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cold: list[float] = []
    warm: list[float] = []
    for run in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="rt-bench-dev-") as tmp:
            data_dir = Path(tmp) / "data"
            cold.append(time_to_ready(data_dir, Path(tmp) / "cold.log"))
            warm.append(time_to_ready(data_dir, Path(tmp) / "warm.log"))
        print(f"run {run + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s", flush=True)
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    print(
        f"median of {args.repeat}: cold {cold_median:.1f} s, warm {warm_median:.1f} s, "
        f"cold/warm {cold_median / warm_median:.1f}x"
    )


if __name__ == "__main__":
    main()
