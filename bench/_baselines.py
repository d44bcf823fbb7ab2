"""What the benchmarks against Evidently and NannyML share: NannyML imported without its
usage logging, and the Markdown tables they print for the README.

Not a benchmark itself; imported by bench/detection.py and bench/cbpe.py, which put the
repository on ``sys.path`` first.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any


def nannyml() -> Any:
    """The ``nannyml`` module (only in ``.venv-bench``), its usage logging off."""
    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # it would call home on every fit
    return importlib.import_module("nannyml")


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A Markdown table, for the README: the first ``left`` columns aligned left, the
    others (numbers) right."""
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + "-:"[k >= left] for k, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])
