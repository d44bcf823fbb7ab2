"""Sink kinds of other packages: a ``streamwatch.sinks`` entry point adds its kind to the
settings, and a kind that streamwatch has built in is refused, naming the entry point.

The kinds are read once, when streamwatch.config is imported, so each case runs a fresh
interpreter with a tiny package on PYTHONPATH: its module and a ``.dist-info`` folder
whose entry_points.txt registers it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Imports streamwatch.config at its top, as a real package would, while streamwatch.config
# is the one loading it.
THIRDPARTY = '''\
"""A pager sink from another package."""

from types import SimpleNamespace
from typing import Literal

from streamwatch.config import SinkSettingsBase


class PagerSettings(SinkSettingsBase):
    """Pages whoever is on call."""

    kind: Literal["{kind}"]
    rotation: str


def build(name, settings, everything):
    raise NotImplementedError("not built in these tests")


KIND = SimpleNamespace(kind="{kind}", settings=PagerSettings, build=build)
'''

LOAD = """\
import sys
from pathlib import Path

from streamwatch.config import load_settings

page = load_settings([Path(sys.argv[1])]).sinks["page"]
print(type(page).__module__, type(page).__name__, page.rotation, page.min_severity.value)
"""


def _run(tmp_path: Path, kind: str, env_file: str) -> subprocess.CompletedProcess[str]:
    """``LOAD`` in a fresh interpreter, with a package whose entry point adds ``kind``."""
    package = tmp_path / "site"
    (package / "thirdparty-0.1.dist-info").mkdir(parents=True)
    (package / "thirdparty-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: thirdparty\nVersion: 0.1\n"
    )
    (package / "thirdparty-0.1.dist-info" / "entry_points.txt").write_text(
        "[streamwatch.sinks]\npager = thirdparty:KIND\n"
    )
    (package / "thirdparty.py").write_text(THIRDPARTY.format(kind=kind))
    (tmp_path / "sinks.env").write_text(env_file)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMWATCH_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", LOAD, str(tmp_path / "sinks.env")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_entry_point_adds_its_kind(tmp_path: Path) -> None:
    run = _run(
        tmp_path,
        "pager",
        "STREAMWATCH_SINKS__PAGE__KIND=pager\n"
        "STREAMWATCH_SINKS__PAGE__ROTATION=weekly\n"
        "STREAMWATCH_SINKS__PAGE__MIN_SEVERITY=critical\n",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "thirdparty PagerSettings weekly critical\n"


def test_a_wrong_setting_of_an_added_kind_is_named(tmp_path: Path) -> None:
    run = _run(tmp_path, "pager", "STREAMWATCH_SINKS__PAGE__KIND=pager\n")
    assert run.returncode == 1
    assert "STREAMWATCH_SINKS__PAGE__ROTATION: Field required" in run.stderr


def test_a_kind_that_is_built_in_is_refused(tmp_path: Path) -> None:
    run = _run(tmp_path, "log", "STREAMWATCH_SINKS__PAGE__KIND=log\n")
    assert run.returncode == 1
    assert (
        "ConfigError: entry point pager = thirdparty:KIND in group streamwatch.sinks "
        "(of thirdparty 0.1): sink kind 'log' clashes with the built-in one "
        "(streamwatch.config.sinks.LogSinkSettings)"
    ) in run.stderr
