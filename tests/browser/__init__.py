"""Headless Chromium (Playwright) against real servers: JS client, dashboard, docs page."""
