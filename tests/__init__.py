"""The test suite: one package per kind of test; shared helpers in tests/support."""
