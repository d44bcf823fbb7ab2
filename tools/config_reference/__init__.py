"""The configuration reference generator (render.py; fields.py reads each field)."""

from tools.config_reference.render import COMMAND, OUTPUT, main, render

__all__ = ["COMMAND", "OUTPUT", "main", "render"]
