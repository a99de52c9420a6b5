"""The suite's shared fixtures live in ``tests/support/fixtures.py`` (see tests/support/README.md);
this file only registers them, for every directory under tests/."""

pytest_plugins = ["tests.support.fixtures"]
