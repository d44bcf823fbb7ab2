"""The outbox's rows: stored once, held until their state is durable, carried with a
partition's state, sent again by hand once dead."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamwatch.alerting.outbox import Outbox
from streamwatch.alerting.policy import sample_notification
from streamwatch.cli import main


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite")
    yield box
    box.close()


def test_a_notification_is_stored_once_per_sink_whatever_the_repeats(outbox: Outbox) -> None:
    n = sample_notification(1_800_000_000.0)
    assert outbox.add(n, "hook")
    assert not outbox.add(n, "hook")  # the same window replayed after a crash
    assert outbox.add(n, "chat")
    assert outbox.counts() == {("hook", "pending"): 1, ("chat", "pending"): 1}


def test_held_rows_are_not_due_until_released_by_id(outbox: Outbox) -> None:
    first, second = sample_notification(1_800_000_000.0), sample_notification(1_800_000_600.0)
    outbox.add(first, "hook", "held")
    outbox.add(second, "hook", "held")
    assert outbox.due("hook", now=2e9) == []
    assert outbox.pending() == 0
    assert outbox.release([first.id, "no-such-id"]) == 1
    assert [row.id for row in outbox.due("hook", now=2e9)] == [first.id]
    assert outbox.release([first.id]) == 0  # pending already: nothing to release
    assert outbox.counts() == {("hook", "pending"): 1, ("hook", "held"): 1}


def test_undelivered_rows_travel_and_are_adopted_as_pending_unless_known(
    tmp_path: Path, outbox: Outbox
) -> None:
    sent, pending, held = (sample_notification(1_800_000_000.0 + 600 * i) for i in range(3))
    outbox.add(sent, "hook")
    outbox.mark(outbox.due("hook", now=2e9)[0], "sent")
    outbox.add(pending, "hook")
    outbox.add(held, "hook", "held")
    carried = outbox.undelivered({sent.model})
    assert [row.id for row in carried] == [pending.id, held.id]
    assert outbox.undelivered({"another-model"}) == []
    assert outbox.undelivered(None) == carried

    successor = Outbox(tmp_path / "successor.sqlite")
    assert successor.adopt(carried) == 2
    assert successor.adopt(carried) == 0  # restored twice: still one row each
    assert successor.counts() == {("hook", "pending"): 2}
    assert [row.notification for row in successor.due("hook", now=2e9)] == [pending, held]
    successor.close()
    assert outbox.adopt(carried) == 0  # where they were made, they are known


def test_dead_rows_are_listed_and_sent_again_by_hand_with_a_fresh_age(outbox: Outbox) -> None:
    n = sample_notification(1_800_000_000.0)
    outbox.add(n, "hook")
    outbox.add(n, "chat")
    for row in outbox.due("hook", now=2e9) + outbox.due("chat", now=2e9):
        outbox.mark(row, "dead", error="503 Service Unavailable")
    dead = outbox.listed(status="dead")
    assert {(r.sink, r.attempts, r.error) for r in dead} == {
        ("hook", 1, "503 Service Unavailable"),
        ("chat", 1, "503 Service Unavailable"),
    }
    assert outbox.listed(sink="chat", status="pending") == []
    assert outbox.retry("hook") == 1
    (row,) = outbox.due("hook", now=2e9)
    assert row.attempts == 0
    assert row.created >= dead[0].created
    assert outbox.counts() == {("hook", "pending"): 1, ("chat", "dead"): 1}
    assert outbox.retry() == 1
    assert outbox.counts() == {("hook", "pending"): 1, ("chat", "pending"): 1}


def test_a_file_from_before_rows_knew_their_model_is_taken_on(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE outbox (id TEXT NOT NULL, sink TEXT NOT NULL, status TEXT NOT NULL, "
        "notification BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, due REAL NOT NULL, "
        "created REAL NOT NULL, error TEXT, PRIMARY KEY (id, sink))"
    )
    db.commit()
    db.close()
    outbox = Outbox(path)
    n = sample_notification(1_800_000_000.0)
    assert outbox.add(n, "hook")
    assert [row.model for row in outbox.undelivered({n.model})] == [n.model]
    outbox.close()


def test_rows_moved_away_with_their_partition_are_never_sent_here_unless_it_comes_back(
    outbox: Outbox,
) -> None:
    n = sample_notification(1_800_000_000.0)
    outbox.add(n, "hook")
    carried = outbox.undelivered({n.model})
    assert outbox.move({n.model}) == 1
    assert outbox.due("hook", now=2e9) == []
    assert outbox.undelivered({n.model}) == []
    assert outbox.adopt(carried) == 1  # the partition came back with its state
    assert [row.id for row in outbox.due("hook", now=2e9)] == [n.id]


def test_the_cli_lists_dead_rows_and_sends_them_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    n = sample_notification(1_800_000_000.0)
    box.add(n, "hook")
    (row,) = box.due("hook", now=2e9)
    box.mark(row, "dead", error="503 Service Unavailable")
    box.close()
    assert main(["outbox", "list", "--status", "dead", "--outbox", str(path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert f"dead     hook             {n.model:<16} {n.id}  attempts 1  503" in line
    assert main(["outbox", "retry", "--sink", "hook", "--outbox", str(path)]) == 0
    assert capsys.readouterr().out.startswith("1 dead notification rows pending again")
    box = Outbox(path)
    assert box.counts() == {("hook", "pending"): 1}
    box.close()
    assert main(["outbox", "list", "--outbox", str(tmp_path / "none.sqlite")]) == 2


def test_the_backlog_is_the_pending_rows_per_sink_and_none_once_closed(outbox: Outbox) -> None:
    first, second = sample_notification(1_800_000_000.0), sample_notification(1_800_000_600.0)
    outbox.add(first, "hook")
    outbox.add(second, "hook")
    outbox.add(first, "chat", "held")  # not pending until its checkpoint is written
    outbox.add(second, "chat")
    (row,) = outbox.due("chat", now=2e9)
    outbox.mark(row, "sent")
    assert outbox.backlog() == {"hook": 2}
    outbox.close()
    assert outbox.backlog() == {}  # a scrape after the daemon closed it
