"""State is data only: nothing in the package can unpickle, and a changelog record
crafted by whoever can write to the topic is refused as data, running nothing."""

from __future__ import annotations

import ast
import os
import pickle
import shlex
from pathlib import Path

import msgspec
import pytest

import streamwatch
from streamwatch.config import Settings
from streamwatch.errors import StateError
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.scaleout import changelog
from streamwatch.state import store as state

# Deserialisers that run code found in their input.
UNSAFE = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "jsonpickle", "marshal", "shelve"}
PACKAGE = Path(streamwatch.__file__).parent


def imported(tree: ast.AST) -> set[str]:
    """Top-level names of the modules ``tree`` imports, by statement or by name."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            called = ast.unparse(node.func)
            first = node.args[0]
            if called in {"__import__", "importlib.import_module", "import_module"} and (
                isinstance(first, ast.Constant) and isinstance(first.value, str)
            ):
                names.add(first.value.split(".")[0])
    return names


def test_no_module_of_the_package_imports_pickle() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 40  # the whole package, not an empty glob
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(found)
        for path in sources
        if (found := imported(ast.parse(path.read_text(), str(path))) & UNSAFE)
    }
    assert offenders == {}


def test_the_walk_would_see_an_import() -> None:
    assert imported(ast.parse("import pickle as p\nfrom dill import loads")) == {"pickle", "dill"}
    assert imported(ast.parse("m = __import__('marshal')")) == {"marshal"}


class _Payload:
    """What a stranger would put in the detector's place: unpickled, it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {shlex.quote(str(marker))}"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def test_a_crafted_changelog_record_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    settings = Settings(detectors={"concept_drift": {"detector": "adwin"}})
    armed = pickle.dumps(_Payload(tmp_path / "control"))
    pickle.loads(armed)  # the payload is live: unpickled, it runs
    assert (tmp_path / "control").exists()

    marker = tmp_path / "pwned"
    crafted = ModelMonitor("m", settings).snapshot()
    crafted["outcomes"]["sequential"]["detector"] = pickle.dumps(_Payload(marker))
    blob = state.encode({"models": {"m": crafted}})
    shape = state.shape(settings)
    # Written the way an instance writes its partition's record: format, shape and
    # checksum all in order, as anyone with access to the topic can make them.
    record = changelog.encode(blob, {("predictions", 0): 42}, shape)

    restored, offsets = changelog.decode(record, shape, "changelog partition 0")
    assert offsets == {("predictions", 0): 42}
    models = msgspec.msgpack.decode(restored)["models"]
    with pytest.raises(StateError, match=r"concept drift's adwin state .* refused"):
        ModelMonitor("m", settings).restore(models["m"])
    assert not marker.exists()


def test_the_detector_state_a_record_carries_is_plain_data() -> None:
    settings = Settings(detectors={"concept_drift": {"detector": "adwin"}})
    snapshot = ModelMonitor("m", settings).snapshot()["outcomes"]["sequential"]

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list | tuple):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, bool | int | float | str)

    assert plain(snapshot)  # no bytes: nothing opaque to interpret
    resumed = ModelMonitor("m", settings)
    resumed.restore(
        msgspec.msgpack.decode(msgspec.msgpack.encode(ModelMonitor("m", settings).snapshot()))
    )
    assert resumed.snapshot()["outcomes"]["sequential"] == snapshot
