"""The floor under a fan-out: what one ``transport.write`` to a loopback TCP socket costs here.

A bare uvloop server holds N connections from a reader process that drains them, then
writes one message of SIZE bytes to each, five rounds, and prints the cost per write (wall
and CPU). This is the `send` syscall plus, on loopback, the receiving side's TCP work: the
part of bench/live_load.py's fan-out that no Python change can remove.

    python -m bench.write_floor 5000 5000
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time

import uvloop


def _drain(port: int, count: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(count):
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        await asyncio.Event().wait()

    uvloop.run(main())


async def measure(count: int, size: int) -> None:
    loop = asyncio.get_running_loop()
    transports: list[asyncio.Transport] = []
    connected = asyncio.Event()

    class Accepted(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transports.append(transport)  # type: ignore[arg-type]
            if len(transports) == count:
                connected.set()

    server = await loop.create_server(Accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = multiprocessing.Process(target=_drain, args=(port, count))
    reader.start()
    try:
        await connected.wait()
        message = os.urandom(size)
        for _ in range(5):
            wall, cpu = time.perf_counter(), time.process_time()
            for transport in transports:
                transport.write(message)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{size} B x {count}: {wall / count * 1e6:.1f} us/write wall, "
                  f"{cpu / count * 1e6:.1f} us CPU")  # fmt: skip
            await asyncio.sleep(0.5)
    finally:
        reader.kill()


if __name__ == "__main__":
    uvloop.run(measure(int(sys.argv[1]), int(sys.argv[2])))
