"""The deployment files pass their tools: compose config and a Dockerfile lint, where those
tools exist on the machine (each test says why it is skipped otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# the compose file refuses to render without the secrets an operator must choose
COMPOSE_ENV = {**os.environ, "POSTGRES_PASSWORD": "x", "IP_HASH_SALT": "y", "ADMIN_TOKEN": "z"}


def compose_command() -> list[str] | None:
    """``docker compose`` (the plugin) if it answers, else ``docker-compose``, else None."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_renders():
    command = compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "--profile", "monitoring", "config", "-q"],
        cwd=REPO, env=COMPOSE_ENV, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_dockerfile_passes_hadolint():
    if shutil.which("hadolint") is None:
        pytest.skip("hadolint is not installed (the Dockerfile was reviewed by hand instead)")
    result = subprocess.run(["hadolint", "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
