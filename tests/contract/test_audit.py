"""AuditLog contract (`skypanda.ports.audit`): entries listed newest first, filtered by target,
actor and time, paged by id, pruned by age. Every test runs against every backend."""

from __future__ import annotations

import pytest

from skypanda.domain.audit import AuditEntry, Outcome, audit_id
from skypanda.domain.errors import InvalidInput
from skypanda.ports import Store

from .conftest import Backend


def _entry(
    at: float, actor: str = "alice", target: str = "t1", action: str = "kill_task"
) -> AuditEntry:
    return AuditEntry(
        id=audit_id(at), at=at, actor=actor, roles=["user"], action=action, method="POST",
        path=f"/v1/tasks/{target}/kill", target_kind="task", target_id=target,
        outcome=Outcome.DONE, status=200, detail="", remote="127.0.0.1", agent="test",
    )  # fmt: skip


def test_entries_come_back_newest_first_as_written(store: Store) -> None:
    written = [_entry(1000.0 + i) for i in range(5)]
    for e in written:
        store.record_audit(e)
    assert store.list_audit() == list(reversed(written))
    assert store.list_audit(limit=2) == [written[4], written[3]]


def test_entries_filter_by_target_actor_and_time(store: Store) -> None:
    a1 = _entry(1000.0, "alice", "t1")
    b1 = _entry(1001.0, "bob", "t1")
    a2 = _entry(1002.0, "alice", "t2")
    for e in (a1, b1, a2):
        store.record_audit(e)
    assert store.list_audit(target_id="t1") == [b1, a1]
    assert store.list_audit(actor="alice") == [a2, a1]
    assert store.list_audit(actor="alice", target_id="t1") == [a1]
    assert store.list_audit(since=1001.0) == [a2, b1]
    assert store.list_audit(actor="carol") == []


def test_pages_follow_the_last_id(store: Store) -> None:
    written = [_entry(2000.0 + i) for i in range(7)]
    for e in written:
        store.record_audit(e)
    seen: list[AuditEntry] = []
    before = None
    while page := store.list_audit(before=before, limit=3):
        seen += page
        before = page[-1].id
    assert seen == list(reversed(written))


def test_a_cursor_that_is_no_entry_id_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput, match="not an audit entry id"):
        store.list_audit(before="x' OR 1=1 --")


def test_pruning_deletes_only_entries_older_than_the_limit(store: Store) -> None:
    old = [_entry(100.0 + i) for i in range(4)]
    new = _entry(5000.0)
    for e in (*old, new):
        store.record_audit(e)
    assert store.prune_audit(200.0, limit=3) == 3
    assert store.prune_audit(200.0) == 1
    assert store.prune_audit(200.0) == 0
    assert store.list_audit() == [new]


def test_entries_survive_a_restart(backend: Backend) -> None:
    first = backend.open()
    entry = _entry(3000.0)
    first.record_audit(entry)
    first.close()
    assert backend.open().list_audit() == [entry]
