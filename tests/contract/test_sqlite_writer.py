"""The embedded store writes on one connection, by turns (`SqliteDb._writer`): writes from many
threads all commit; inside a write scope the writing thread reads what it wrote, and no other
thread does until the commit; a rolled-back scope leaves nothing; a store in memory (one
database per connection) still reads its own writes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain import events as ev
from tests.support import FakeClock


def _ended(i: int) -> ev.Event:
    return ev.job_ended(f"j{i}", 1, "t", "finished")


def test_writes_from_many_threads_all_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", clock=FakeClock().now)
    try:

        def write(start: int) -> None:
            for i in range(start, start + 25):
                store.add_events([_ended(i)])

        threads = [threading.Thread(target=write, args=(k * 25,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.pending_events(1000)) == 100
    finally:
        store.close()


def test_a_scope_reads_its_own_writes_and_others_see_them_after_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", clock=FakeClock().now)
    try:
        seen_outside: list[int] = []
        with store.atomic():
            store.add_events([_ended(1)])
            assert len(store.pending_events(10)) == 1  # the writer's own read
            reader = threading.Thread(
                target=lambda: seen_outside.append(len(store.pending_events(10)))
            )
            reader.start()
            reader.join()
        assert seen_outside == [0]  # not committed yet when the other thread looked
        assert len(store.pending_events(10)) == 1
        # A scope that fails leaves nothing, and the next write still commits
        with pytest.raises(RuntimeError), store.atomic():
            store.add_events([_ended(2)])
            raise RuntimeError("undo")
        store.add_events([_ended(3)])
        assert [s.event.data["job_id"] for s in store.pending_events(10)] == ["j1", "j3"]
    finally:
        store.close()


def test_a_store_in_memory_reads_its_own_writes() -> None:
    store = SqliteStore(":memory:", clock=FakeClock().now)
    try:
        store.add_events([_ended(1)])
        assert len(store.pending_events(10)) == 1
    finally:
        store.close()
