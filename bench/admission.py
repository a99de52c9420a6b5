"""Live admission: what one process spends to admit a live connection, and to shed one.

Phase 1 (``admit``), shedding off: ``--connections`` WebSocket clients, ``--parallel`` at a
time, each from one of many loopback source addresses (127.0.0.2-127.0.0.251, so the
per-address cap is not what is measured, though every handshake still takes its slot in
Redis), each opening, sending ``hello`` and waiting for its ``welcome``. Printed: server CPU ms
per admission, the admissions one process could make per second of a whole core
(``admit_per_core_s``), the wall-clock rate seen here, and as the baseline measured on the
same server in the same run, server CPU ms per plain ``GET /health/live`` request
(``admit_vs_request``: what one admission costs in plain requests).

Phase 2 (``herd``): a server shedding at ``--herd-rate`` handshakes/s (burst 1) gets
``--herd`` clients at once. Printed: admitted, shed (503 ``OVERLOADED``), server CPU ms per
shed handshake, and the spread of the ``Retry-After`` values.

The load generator shares the machine with the server, PostgreSQL, Redis and, here, other
engineers' test runs: wall-clock rates are noisy and low; CPU per handshake is the figure
to compare. ``--repeat 3`` prints medians.

    python -m bench.admission --connections 1500 --herd 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import httpx
import msgpack
import uvloop

from bench.harness import (
    ServerProcess,
    Stack,
    cpu_seconds,
    percentile,
    raise_fd_limit,
    stack,
    start_server,
)

SOURCES = [f"127.0.0.{i}" for i in range(2, 252)]
HELLO = msgpack.packb({"t": "hello", "v": 1})


def _masked_binary(payload: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x82, 0x80 | len(payload)]) + mask + body


@dataclass
class Outcome:
    """What the handshakes of a phase got."""

    welcomed: list[float] = field(default_factory=list)
    retry_after: list[int] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)


class Handshake(asyncio.Protocol):
    """One WebSocket handshake: ``hello`` after a 101, done at the ``welcome`` or refusal."""

    def __init__(self, port: int, outcome: Outcome) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self.request = (
            f"GET /api/live/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: realtube.v1.msgpack\r\n\r\n"
        ).encode()
        self.outcome = outcome
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.decode("latin-1").split("\r\n")
            status = lines[0].split()[1]
            if status != "101":
                headers = dict(line.lower().split(": ", 1) for line in lines[1:])
                if status == "503" and "retry-after" in headers:
                    self.outcome.retry_after.append(int(headers["retry-after"]))
                else:
                    self.outcome.other[status] += 1
                self._finish()
                return
            self.upgraded = True
            self.buffer = rest
            assert self.transport is not None
            self.transport.write(_masked_binary(HELLO))
        if len(self.buffer) >= 2 and not self.done.done():
            self.outcome.welcomed.append(time.monotonic())
            self.done.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.outcome.other["lost"] += 1
            self.done.set_result(None)


async def handshakes(
    port: int, count: int, parallel: int
) -> tuple[Outcome, list[Handshake], float]:
    """``count`` handshakes, ``parallel`` at a time; the outcome, the open ones, seconds."""
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    opened: list[Handshake] = []
    semaphore = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with semaphore:
            _, proto = await loop.create_connection(
                lambda: Handshake(port, outcome),
                "127.0.0.1",
                port,
                local_addr=(SOURCES[i % len(SOURCES)], 0),
            )
            opened.append(proto)
            await asyncio.wait_for(proto.done, timeout=120)

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(count)))
    return outcome, opened, time.monotonic() - started


async def plain_requests(url: str, count: int, parallel: int) -> None:
    """``count`` plain ``GET /health/live`` at ``parallel`` concurrency: the baseline."""
    limits = httpx.Limits(max_connections=parallel, max_keepalive_connections=parallel)
    async with httpx.AsyncClient(base_url=url, limits=limits) as client:
        semaphore = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with semaphore:
                (await client.get("/health/live")).raise_for_status()

        await asyncio.gather(*(one() for _ in range(count)))


async def close_all(server: ServerProcess, opened: list[Handshake]) -> None:
    for proto in opened:
        if proto.transport is not None:
            proto.transport.close()
    async with httpx.AsyncClient(base_url=server.url) as client:
        for _ in range(600):
            ready = (await client.get("/health/ready")).json()
            if not sum(ready["checks"]["live"]["connections"].values()):
                return
            await asyncio.sleep(0.1)


async def admit_phase(st: Stack, args: argparse.Namespace) -> dict[str, float]:
    server = start_server(
        st,
        LIVE_ACCEPT_RATE="0",
        LIVE_MAX_CONNECTIONS="1000000",
        LIVE_MAX_CONNECTIONS_PER_IP="1000000",
        LIVE_IDLE_TIMEOUT_SECONDS="3600",
        RUN_WORKERS="false",
    )
    try:
        cpu0 = cpu_seconds(server.process.pid)
        await plain_requests(server.url, args.connections, args.parallel)
        request_ms = (cpu_seconds(server.process.pid) - cpu0) * 1000 / args.connections
        cpu0 = cpu_seconds(server.process.pid)
        outcome, opened, _ = await handshakes(server.port, args.connections, args.parallel)
        admit_ms = (cpu_seconds(server.process.pid) - cpu0) * 1000 / args.connections
        first, last = min(outcome.welcomed), max(outcome.welcomed)
        assert len(outcome.welcomed) == args.connections, outcome.other
        await close_all(server, opened)
    finally:
        server.stop()
    return {
        "server_cpu_ms_per_admission": round(admit_ms, 3),
        "admit_per_core_s": round(1000 / admit_ms),
        "admitted_per_s_wall": round(args.connections / max(last - first, 1e-9)),
        "server_cpu_ms_per_request": round(request_ms, 3),
        "admit_vs_request": round(admit_ms / request_ms, 2),
    }


async def herd_phase(st: Stack, args: argparse.Namespace) -> dict[str, float]:
    server = start_server(
        st,
        LIVE_ACCEPT_RATE=str(args.herd_rate),
        LIVE_ACCEPT_BURST="1",
        LIVE_MAX_CONNECTIONS_PER_IP="1000000",
        LIVE_IDLE_TIMEOUT_SECONDS="3600",
        RUN_WORKERS="false",
    )
    try:
        cpu0 = cpu_seconds(server.process.pid)
        outcome, opened, seconds = await handshakes(server.port, args.herd, args.herd)
        cpu = cpu_seconds(server.process.pid) - cpu0
        await close_all(server, opened)
    finally:
        server.stop()
    waits = [float(w) for w in outcome.retry_after]
    return {
        "herd": args.herd,
        "herd_seconds": round(seconds, 2),
        "herd_admitted": len(outcome.welcomed),
        "herd_shed": len(waits),
        "herd_other": sum(outcome.other.values()),
        "server_cpu_ms_per_handshake_in_herd": round(cpu * 1000 / args.herd, 3),
        "retry_after_p50": percentile(waits, 50) if waits else 0,
        "retry_after_p90": percentile(waits, 90) if waits else 0,
        "retry_after_max": max(waits, default=0),
        "retry_after_distinct": len(set(waits)),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=100)
    parser.add_argument("--herd", type=int, default=2000)
    parser.add_argument("--herd-rate", type=float, default=50.0, help="LIVE_ACCEPT_RATE")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    raise_fd_limit()
    runs = []
    with stack() as st:
        for _ in range(args.repeat):
            result = await admit_phase(st, args) | await herd_phase(st, args)
            print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
            runs.append(result)
    if len(runs) > 1:
        medians = {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}
        print("median " + " ".join(f"{k}={v}" for k, v in medians.items()))


if __name__ == "__main__":
    uvloop.run(main())
