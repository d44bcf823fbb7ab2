"""Generators run from the repository root, e.g. ``python -m tools.config_reference``."""
