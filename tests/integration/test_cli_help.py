"""``realtube-push --help`` and its commands' help, as a new user reads them."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.servers import REPO

COMMANDS = ("dev", "serve", "worker", "migrate", "export", "watch")


def realtube(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realtube_push", *args],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_top_level_help_lists_every_command_with_a_summary():
    result = realtube("--help")

    assert result.returncode == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\w+", result.stdout, re.M), (command, result.stdout)
    assert "``" not in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_a_description_and_no_raw_markup_in_its_help(command):
    result = realtube(command, "--help")

    assert result.returncode == 0
    usage, description, *_ = result.stdout.split("\n\n")
    assert usage.startswith(f"usage: realtube-push {command}")
    assert not description.startswith(("options:", "positional arguments:")), result.stdout
    assert len(description.split()) >= 5, result.stdout
    assert "``" not in result.stdout


def test_flags_show_their_defaults():
    dev = realtube("dev", "--help").stdout
    export = realtube("export", "--help").stdout

    assert "(default: .realtube)" in " ".join(dev.split())
    assert "8080" in dev
    assert "(default: .realtube)" in " ".join(export.split())


def test_a_wrong_flag_prints_that_commands_usage():
    result = realtube("dev", "--nope")

    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: realtube-push dev ")
    assert "realtube-push dev: error: unrecognized arguments: --nope" in result.stderr
