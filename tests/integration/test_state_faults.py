"""The daemon when its files fail it: a damaged file, a read-only directory, a full disk.

Each ends the process with exit code 2 and one JSON error line that names the file and
says what to do; never a traceback. The faults are the operating system's own: a
read-only bind mount (as root, a chmod-ed directory would still take the writes) and a
2 MB tmpfs, filled up but for a few pages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from streamwatch.config import Settings
from streamwatch.state.store import StateStore
from tests.factories import event
from tests.integration.helpers import (
    Daemon,
    committed,
    env_file,
    json_lines,
    produce,
    wait_for,
)
from tests.kafka_local import free_port

FREE = 96 << 10  # left on the full disk: enough to open the files, not for checkpoints


def _mount(target: Path, *options: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a read-only or tmpfs file system")
    done = subprocess.run(
        ["mount", *options, str(target)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:  # a container without CAP_SYS_ADMIN, for one
        pytest.skip(f"mount {' '.join(options)} refused here: {done.stderr.strip()}")


@contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """``directory``, seen read-only at another path (a bind mount)."""
    target = directory.with_name(directory.name + "-ro")
    target.mkdir()
    _mount(target, "--bind", str(directory))
    try:
        remounted = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if remounted.returncode != 0:
            pytest.skip(f"a read-only bind mount is refused here: {remounted.stderr.strip()}")
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


@contextmanager
def full_disk(target: Path) -> Iterator[Path]:
    """A 2 MB tmpfs at ``target``, filled but for :data:`FREE` bytes."""
    target.mkdir()
    _mount(target, "-t", "tmpfs", "-o", "size=2m", "tmpfs")
    try:
        stat = os.statvfs(target)
        (target / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - FREE))
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def run(*args: str, timeout: float = 60.0) -> tuple[int, str]:
    """A streamwatch command to its end: exit code, and stdout and stderr together."""
    done = subprocess.run(
        [sys.executable, "-m", "streamwatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout.decode()


def errors(output: str) -> list[dict[str, Any]]:
    """The error lines of a command's JSON log (other output, such as the demo's, skipped);
    with no traceback anywhere."""
    assert "Traceback" not in output, output
    lines = []
    for line in output.splitlines():
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(parsed, dict) and parsed.get("level") == "error":
            lines.append(parsed)
    return lines


def daemon_env(tmp_path: Path, state: Path, **more: object) -> Path:
    """A daemon whose broker is not there: the files are opened before it is looked for."""
    return env_file(
        tmp_path / "d.env",
        kafka__bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka__connect_timeout="0.5s",
        state__path=state,
        server__enabled="false",
        **more,
    )


def daemon(env: Path) -> tuple[int, str]:
    return run("--log-level", "INFO", "run", "--env-file", str(env))


@pytest.mark.parametrize("damaged", ["state.sqlite", "state.sqlite.outbox"])
def test_a_file_that_is_not_sqlite_ends_the_daemon_with_one_line_naming_it(
    tmp_path: Path, damaged: str
) -> None:
    (tmp_path / damaged).write_bytes(b"\x00garbage, not SQLite\xff" * 400)
    code, output = daemon(daemon_env(tmp_path, tmp_path / "state.sqlite"))
    assert code == 2, output
    (line,) = errors(output)
    assert line["path"] == str(tmp_path / damaged)
    assert "file is not a database" in line["message"]
    assert "move it aside" in line["message"]


@pytest.mark.parametrize("command", ["status", "report"])
def test_status_and_report_refuse_a_damaged_or_missing_state_file_in_one_line(
    tmp_path: Path, command: str
) -> None:
    damaged = tmp_path / "state.sqlite"
    damaged.write_bytes(b"\x00garbage, not SQLite\xff" * 400)
    for path, says in [(damaged, "move it aside"), (tmp_path / "none.sqlite", "no state file")]:
        code, output = run(command, "--state", str(path))
        assert code == 2, output
        (line,) = errors(output)
        assert line["path"] == str(path)
        assert says in line["message"]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_a_read_only_state_directory_ends_the_daemon_with_one_line_naming_the_file(
    tmp_path: Path, existing: bool
) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    if existing:  # written earlier, when the directory could take it
        StateStore(directory / "state.sqlite", Settings()).close()
    with read_only(directory) as frozen:
        state = frozen / "state.sqlite"
        env = daemon_env(tmp_path, state, outbox__path=tmp_path / "outbox.sqlite")
        code, output = daemon(env)
    assert code == 2, output
    (line,) = errors(output)
    assert line["path"] == str(state)
    assert "make it and its directory writable" in line["message"]


def test_a_disk_that_fills_up_during_the_demo_ends_it_with_one_line(tmp_path: Path) -> None:
    with full_disk(tmp_path / "disk") as disk:
        out = disk / "demo"
        code, output = run("demo", "--events-per-hour", "600", "--out", str(out))
        assert (out / "state.sqlite").stat().st_size > 0  # opened: the checkpoint failed
    assert code == 2, output
    (line,) = errors(output)
    assert line["path"] == str(out / "state.sqlite")
    assert "database or disk is full" in line["message"]
    assert "free space on its disk" in line["message"]


def test_a_disk_that_fills_up_mid_run_ends_the_daemon_with_one_line_and_no_commit(
    kafka: str, topics: Callable[[int], list[str]], tmp_path: Path
) -> None:
    (topic,) = topics(1)
    features = {f"f{k}": k for k in range(40)}
    produce(
        kafka,
        topic,
        [
            event(f"e{i}", timestamp=1_790_000_000_000 + i * 300, features=features)
            for i in range(2400)  # 12 one-minute windows
        ],
    )
    with full_disk(tmp_path / "disk") as disk:
        state = disk / "state.sqlite"
        env = env_file(
            tmp_path / "d.env",
            kafka__bootstrap_servers=kafka,
            kafka__topics=f'["{topic}"]',
            kafka__group_id="full",
            kafka__auto_offset_reset="earliest",
            window__size="1m",
            state__path=state,
            state__checkpoint_interval="1s",
            outbox__path=tmp_path / "outbox.sqlite",
            server__enabled="false",
        )
        log = tmp_path / "daemon.log"
        process = Daemon(env, log).start().process
        assert process is not None
        try:
            wait_for(lambda: process.poll() is not None, 60, "the daemon to stop")
        finally:
            if process.poll() is None:  # let the tmpfs go
                process.kill()
                process.wait()
    assert process.returncode == 2
    assigned = [line for line in json_lines(log) if line["message"] == "partitions assigned"]
    assert assigned, "the state file was opened and the daemon consumed before the disk was full"
    (line,) = errors(log.read_text())
    assert line["path"] == str(state)
    assert "database or disk is full" in line["message"]
    assert "free space on its disk" in line["message"]
    assert committed(kafka, "full", topic) is None  # nothing committed that is not durable
