"""``realtube-push watch`` as a user runs it: a process printing one line per delta.

The process runs as on a client-only install (``pip install realtube-push``): every module of
the server's extra is made unimportable, so a server import creeping into the client or the
command line fails here.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Callable

import anyio
import orjson
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.support import ids
from tests.support.servers import REPO

pytestmark = pytest.mark.anyio

DEADLINE = 15.0


def server_only_modules() -> set[str]:
    """Top-level module names of the ``[server]`` extra's distributions that the base install
    does not bring too (the server pins some of the client's own, such as wsproto)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    server, base = project["optional-dependencies"]["server"], project["dependencies"]
    return _module_names(server) - _module_names(base)


def _module_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\[<>=;! ]", r, maxsplit=1)[0].replace("-", "_").lower() for r in requirements
    }


#: ``python -c`` code: the ``realtube-push`` command with the server's extra unimportable.
CLIENT_ONLY = f"""
import sys
class ServerExtraMissing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {sorted(server_only_modules())!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, ServerExtraMissing())
from realtube_push.cli import main
raise SystemExit(main())
"""


def realtube_push_command(*args: str) -> list[str]:
    """``realtube-push ARGS`` as run on a client-only install."""
    return [sys.executable, "-c", CLIENT_ONLY, *args]


async def lines_of(process: Process) -> AsyncIterator[str]:
    assert process.stdout is not None
    stream = BufferedByteReceiveStream(process.stdout)
    while True:
        try:
            line = await stream.receive_until(b"\n", 1 << 20)
        except anyio.EndOfStream:
            return
        yield line.decode()


async def read_until(lines: AsyncIterator[str], wanted: Callable[[str], bool]) -> list[str]:
    """Lines up to and including the first ``wanted`` one (fails at the end of output)."""
    seen: list[str] = []
    async for line in lines:
        seen.append(line)
        if wanted(line):
            return seen
    raise AssertionError(f"output ended without the expected line:\n{seen}")


@pytest.mark.parametrize("as_json", [False, True])
async def test_watch_prints_a_line_for_a_vote_without_the_server_dependencies_or_settings(
    server, api, as_json
):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    command = realtube_push_command("watch", "--url", server.url)
    if as_json:
        command.append("--json")
    video = ids.video_id()
    process = await anyio.open_process(command, cwd=REPO, env=env, stderr=None)
    try:
        lines = lines_of(process)
        with anyio.fail_after(DEADLINE):
            if as_json:
                await read_until(lines, lambda s: orjson.loads(s).get("connected") is True)
            else:
                await read_until(lines, lambda s: "connected=yes" in s)
            await api.vote(server.url, video)
            seen = await read_until(lines, lambda s: video in s)
    finally:
        process.terminate()
        with anyio.move_on_after(10, shield=True):
            await process.wait()
        await process.aclose()
    line = seen[-1]
    if as_json:
        delta = orjson.loads(line)
        assert delta["type"] == "delta"
        assert (delta["action"], delta["kind"], delta["id"]) == ("update", "video", video)
        assert isinstance(delta["seq"], int)
        assert delta["score"] > 0
        assert "fully_ai" in delta["categories"]
    else:
        seq, action, kind, video_id, score, categories = line.split(" ")
        assert seq.startswith("seq=")
        assert int(seq.removeprefix("seq=")) > 0
        assert (action, kind, video_id) == ("update", "video", video)
        assert float(score.removeprefix("score=")) > 0
        assert categories.startswith("categories=fully_ai:")


@pytest.mark.parametrize("as_json", [False, True])
async def test_watch_against_a_dead_url_prints_each_retry_with_its_delay_and_reason(as_json):
    # a port bound but not listening: every connection attempt is refused at once
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{dead.getsockname()[1]}"
        command = realtube_push_command("watch", "--url", url)
        if as_json:
            command.append("--json")
        process = await anyio.open_process(command, cwd=REPO, stderr=None)
        try:
            lines = lines_of(process)
            retries: list[str] = []
            with anyio.fail_after(DEADLINE):
                while len(retries) < 3:
                    seen = await read_until(lines, lambda s: "retry" in s)
                    retries.append(seen[-1])
        finally:
            process.terminate()
            with anyio.move_on_after(10, shield=True):
                await process.wait()
            await process.aclose()
    for line in retries:
        if as_json:
            retry = orjson.loads(line)
            assert retry["type"] == "retry"
            assert retry["next"] == "full_sync"
            assert retry["url"] == url
            assert 0 <= retry["delay"] <= 60
            assert "ConnectError" in retry["reason"]
        else:
            assert line.startswith("retry full_sync in ")
            delay = line.split()[3]
            assert delay.endswith("s")
            assert 0 <= float(delay.removesuffix("s")) <= 60
            assert f"url={url}" in line
            assert "ConnectError" in line


def test_server_command_on_a_client_only_install_says_what_to_install():
    result = subprocess.run(
        realtube_push_command("serve"), cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "pip install 'realtube-push[server]'" in result.stderr
    assert "Traceback" not in result.stderr
