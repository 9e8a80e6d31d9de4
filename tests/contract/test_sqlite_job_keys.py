"""The embedded store keeps a task's jobs, their edges and their attempts in index order (job
keys, adapters/local/sqlite/keys.py), and rewrites a database of an earlier version, whose edges
and attempts were keyed by the scrambled job ids, the first time it opens it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.adapters.local.sqlite.keys import INDEX_BITS, Keys, split, unsplit
from skypanda.domain.dag import ParentsState
from skypanda.domain.ids import job_id
from skypanda.domain.states import JobStatus
from tests.support import FakeClock

from .conftest import fits_all, make_queue
from .helpers import add_jobs_with_parents, end_jobs

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@given(task=_TEXT, index=st.integers(0, (1 << INDEX_BITS) - 1))
def test_a_task_job_id_keys_by_its_task_and_index_and_back(task: str, index: int) -> None:
    assume(not task.startswith("\0"))  # the mark of the other ids: below
    jid = job_id(task, index)
    assert split(jid) == (task, index)
    assert unsplit(*split(jid)) == jid


@given(jid=_TEXT)
def test_any_other_id_keys_as_its_own_task_and_back(jid: str) -> None:
    # An id made otherwise (a hand-made one, upper-case digits, an index over 2**32) is its
    # own task: two different ids never share a key
    task, index = split(jid)
    assert unsplit(task, index) == jid
    if task.startswith("\0"):
        assert (task, index) == ("\0" + jid, 0)


def test_a_task_id_beginning_with_the_mark_of_other_ids_keys_as_its_own() -> None:
    # (hypothesis found "\0-000000000000" keyed as task "\0", index 0, and read back as "")
    for jid in (job_id("\0", 0), job_id("\0t1", 7)):
        assert split(jid) == ("\0" + jid, 0) and unsplit(*split(jid)) == jid


def test_an_id_spelled_otherwise_is_not_the_task_job_of_that_index() -> None:
    canonical = next(j for j in (job_id("t1", i) for i in range(100)) if not j[3:].isdigit())
    upper = "t1-" + canonical[3:].upper()
    assert upper != canonical and split(upper) == ("\0" + upper, 0)
    assert split(job_id("t1", 1 << INDEX_BITS))[0].startswith("\0")


def test_a_task_jobs_are_stored_at_keys_in_index_order(tmp_path: Path, clock: FakeClock) -> None:
    # Given a task of 50 jobs and a child task waiting for them
    store = SqliteStore(tmp_path / "s.db", clock=clock.now)
    try:
        parents = add_jobs_with_parents(store, clock, "tp", [[] for _ in range(50)])
        add_jobs_with_parents(store, clock, "tc", [[p.id for p in parents]])
        db = store._conn()
        # Then the jobs' rows, and the edges out of them, are in index order
        rows = db.execute("SELECT idx FROM jobs WHERE task_id = 'tp' ORDER BY rowid").fetchall()
        assert [r[0] for r in rows] == list(range(50))
        edges = [r[0] for r in db.execute("SELECT parent FROM job_links ORDER BY parent, child")]
        by_key = Keys(db, [], add=False).ids(edges)
        assert [by_key[k] for k in edges] == [p.id for p in parents]
    finally:
        store.close()


def _make_old(path: Path) -> None:
    """Rewrite a database to what an earlier version left: jobs at rowids SQLite gave them,
    `job_edges` by job id, `attempts` keyed by job id, no `task_keys`."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    edges = db.execute("SELECT parent, child, parent_status FROM job_links").fetchall()
    named = Keys(db, [], add=False).ids([k for p, c, _ in edges for k in (p, c)])
    db.execute(
        "CREATE TABLE job_edges (parent TEXT NOT NULL, child TEXT NOT NULL, parent_status TEXT, "
        "PRIMARY KEY (parent, child)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX job_edges_by_child ON job_edges (child, parent_status)")
    db.executemany(
        "INSERT INTO job_edges VALUES (?,?,?)", [(named[p], named[c], s) for p, c, s in edges]
    )
    db.execute("DROP TABLE job_links")
    db.execute("DROP TABLE task_keys")
    for n, (rowid,) in enumerate(db.execute("SELECT rowid FROM jobs ORDER BY id").fetchall()):
        db.execute("UPDATE jobs SET rowid = ? WHERE rowid = ?", (n + 1, rowid))
    cols = (
        "job_id, attempt, pilot_id, status, started_at, ended_at, exit_code, error_code, "
        "error_diag, log_uri, max_rss_mb"
    )
    db.execute("ALTER TABLE attempts RENAME TO attempts_new")
    db.execute("DROP INDEX attempts_errors")
    db.execute(
        "CREATE TABLE attempts (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, pilot_id TEXT, "
        "status TEXT NOT NULL, started_at REAL, ended_at REAL, exit_code INTEGER, "
        "error_code INTEGER, error_diag TEXT NOT NULL DEFAULT '', log_uri TEXT, "
        "max_rss_mb INTEGER, PRIMARY KEY (job_id, attempt)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE INDEX attempts_errors ON attempts (job_id, error_code, ended_at) "
        "WHERE error_code IS NOT NULL"
    )
    db.execute(f"INSERT INTO attempts ({cols}) SELECT {cols} FROM attempts_new")
    db.execute("DROP TABLE attempts_new")
    db.execute("COMMIT")
    db.close()


def test_a_database_of_an_earlier_version_keeps_its_edges_and_attempts(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Given a database as an earlier version left it: a child of two parents and of one known
    # only as failed (`gone`), the first parent finished (its attempts written), the second
    # not yet claimed
    path = tmp_path / "old.db"
    store = SqliteStore(path, clock=clock.now)
    store.put_queue(make_queue("q"))
    p0, p1 = add_jobs_with_parents(store, clock, "tp", [[], []])
    [child] = add_jobs_with_parents(
        store, clock, "tc", [["gone", p0.id, p1.id]], parent_status={"gone": JobStatus.FAILED}
    )
    end_jobs(store, clock, [p0])
    attempts_before = store.attempts(p0.id)
    store.close()
    _make_old(path)

    # When a store opens it
    reopened = SqliteStore(path, clock=clock.now)
    try:
        db = reopened._conn()
        # Then the old tables are gone, every job is at its key, and the attempts are kept
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "job_edges" not in tables and {"job_links", "task_keys"} <= tables
        keyed = Keys(db, [p0.id, p1.id, child.id], add=False).of()
        rows = dict(db.execute("SELECT id, rowid FROM jobs").fetchall())
        assert rows == keyed
        assert reopened.attempts(p0.id) == attempts_before
        # And the edges release as before: p0 ended, p1 pending, `gone` failed
        assert reopened.release_children([p0.id]) == {
            child.id: ParentsState(pending=True, failed_parents=("gone",))
        }
        end_jobs(reopened, clock, [p1])
        assert reopened.release_children([p1.id]) == {
            child.id: ParentsState(pending=False, failed_parents=("gone",))
        }
        assert [a.attempt for a in reopened.attempts(p1.id)] == [1]
        assert reopened.claim_jobs("q", "p2", 10, fits_all(), clock.now()) == []
    finally:
        reopened.close()
