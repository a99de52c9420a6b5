"""Quart blueprints, thin: parse and validate -> domain/store -> respond."""
