"""Fixtures for the stack tests: app instances behind real nginx running the shipped config.

``nginx_stack`` is the default stack (two instances, limits off as in every integration test);
``nginx_stack_factory(**env)`` starts one whose instances get extra settings. Both skip, with
the reason, where nginx or openssl is not installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support.nginx import Nginx, nginx_binary, start_nginx
from tests.support.servers import Server, ServerFactory

APP_INSTANCES = 2
# nginx reaches the instances from 127.0.0.1; tests reach them directly from other loopback
# addresses (127.0.0.2, ...), which are therefore not trusted proxies.
NGINX_ADDRESS = "127.0.0.1/32"


@dataclass
class NginxStack:
    """nginx and the app instances behind it (in upstream order)."""

    nginx: Nginx
    apps: list[Server]


StackFactory = Callable[..., NginxStack]


@pytest.fixture
def nginx_path() -> str:
    """The nginx executable, or a skip saying how to get it."""
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (Debian: apt-get install openssl)")
    return binary


@pytest.fixture
def nginx_stack_factory(servers: ServerFactory, nginx_path: str) -> Iterator[StackFactory]:
    """Starts app instances (``env`` = extra settings) and nginx in front; stops nginx after.

    The instances trust forwarded addresses from nginx only, as in production.
    """
    started: list[Nginx] = []

    def start(**env: str) -> NginxStack:
        settings = {"TRUSTED_PROXIES": NGINX_ADDRESS, **env}
        apps = [servers.start(**settings) for _ in range(APP_INSTANCES)]
        nginx = start_nginx(nginx_path, [f"127.0.0.1:{app.port}" for app in apps])
        started.append(nginx)
        return NginxStack(nginx, apps)

    yield start
    for nginx in started:
        nginx.stop()


@pytest.fixture
def nginx_stack(nginx_stack_factory: StackFactory) -> NginxStack:
    """Two instances with the app's rate limits off, behind nginx."""
    return nginx_stack_factory()
