"""Job keys: the integers that keep a task's jobs, and the edges between them, in index order.

Job ids are scrambled (`domain.ids`: Firestore must not see sequential document ids, DESIGN law
5), so a B-tree keyed by job id takes every write on a random page: releasing a million-job
workflow wrote several pages per job to the WAL. SQLite has no such hot spot, so here each job
also has a key that follows its task and index: `(k << 32) | index`, where `k` numbers the task
in this database (`task_keys`, given on first sight). A job's row is stored at that key (its
`rowid`), and the edges between jobs (`job_links`) are keyed by the keys of their ends, so the
jobs of one task, and the edges out of them, are neighbours in every B-tree that the release
path writes.

A key is computed from the job id alone (`domain.ids` is a bijection: the index is read back
from the id), so an edge can name a parent that is not stored yet (an eager task's children
are made before it) or never will be (a parent known only as ended). An id that is not
`<task id>-<12 hex digits>` of an index below 2**32, or whose task id begins with `\\0`, is its
own "task" (`\\0` + the id, index 0).

`job_edges` of earlier versions (text ids) is rewritten once, when a store first opens such a
database (`migrate`): every job moved to its key, every edge to `job_links`. Nothing may
VACUUM the database: SQLite may renumber the rowids of a table without an INTEGER PRIMARY KEY.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from skypanda.domain.ids import job_id, unscramble

INDEX_BITS = 32
_MAX_INDEX = (1 << INDEX_BITS) - 1
_OWN = "\0"
"""The prefix of the `task_keys` entry of an id that is not a task's job id (its own task)."""
_BATCH = 2000


def split(jid: str) -> tuple[str, int]:
    """The (task, index) a job id keys by: its task id and index where it is one of
    `domain.ids.job_id`'s, else (`\\0` + the id, 0)."""
    task, _, tail = jid.rpartition("-")
    if len(tail) == 12 and not task.startswith(_OWN):  # (the prefix marks the others)
        try:
            value = int(tail, 16)
        except ValueError:
            value = -1
        if value >= 0 and f"{value:012x}" == tail:  # the one spelling of this index
            index = unscramble(value)
            if index <= _MAX_INDEX:
                return task, index
    return _OWN + jid, 0


def unsplit(task: str, index: int) -> str:
    """The job id of (task, index) as `split` gave them."""
    return task[1:] if task.startswith(_OWN) else job_id(task, index)


def task_keys(db: sqlite3.Connection, tasks: Iterable[str], *, add: bool) -> dict[str, int]:
    """The numbers of `tasks` in this database; `add`: number those that have none (in a
    write transaction), else leave them out (no job or edge of theirs is stored)."""
    wanted = list(dict.fromkeys(tasks))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), _BATCH):
        chunk = wanted[start : start + _BATCH]
        marks = ",".join("?" * len(chunk))
        if add:
            db.execute(f"INSERT OR IGNORE INTO task_keys (id) VALUES {marks.replace('?', '(?)')}",
                       chunk)  # fmt: skip
        found.update(db.execute(f"SELECT id, k FROM task_keys WHERE id IN ({marks})", chunk))
    return found


class Keys:
    """The keys of job ids, and back, over one connection's view of `task_keys`."""

    def __init__(self, db: sqlite3.Connection, ids: Iterable[str], *, add: bool) -> None:
        self.split = {jid: split(jid) for jid in ids}
        self.tasks = task_keys(db, (t for t, _ in self.split.values()), add=add)
        self._db = db

    def of(self) -> dict[str, int]:
        """Job id -> key, for the ids whose task is numbered."""
        tasks = self.tasks
        return {
            jid: (tasks[t] << INDEX_BITS) | i for jid, (t, i) in self.split.items() if t in tasks
        }

    def ids(self, keys: Iterable[int]) -> dict[int, str]:
        """Key -> job id, for keys of numbered tasks (reads the numbers it does not know)."""
        by_k = {k: t for t, k in self.tasks.items()}
        keys = list(keys)
        unknown = list({key >> INDEX_BITS for key in keys} - by_k.keys())
        for start in range(0, len(unknown), _BATCH):
            chunk = unknown[start : start + _BATCH]
            by_k.update(
                (k, t)
                for k, t in self._db.execute(
                    f"SELECT k, id FROM task_keys WHERE k IN ({','.join('?' * len(chunk))})", chunk
                )
            )
        return {key: unsplit(by_k[key >> INDEX_BITS], key & _MAX_INDEX) for key in keys}


class Numbering:
    """The keys of ids stored in one write transaction: a task met for the first time is
    numbered (one `task_keys` write and read), then remembered; no map of the ids is kept."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._tasks: dict[str, int] = {}

    def _number(self, task: str) -> int:
        k = self._tasks.get(task)
        if k is None:
            k = self._tasks[task] = task_keys(self._db, [task], add=True)[task]
        return k << INDEX_BITS

    def key(self, jid: str) -> int:
        """The key of a job id (a parent's, say)."""
        task, index = split(jid)
        return self._number(task) | index

    def job_key(self, task_id: str, jid: str, index: int) -> int:
        """The key of a new job of `task_id`: a job whose id is `job_id(task_id, index)`, as
        every split makes them, costs one format and a compare."""
        if index <= _MAX_INDEX and jid == job_id(task_id, index):
            return self._number(task_id) | index
        return self.key(jid)


def migrate(db: sqlite3.Connection, schema: str) -> None:
    """Rewrite a database of an earlier version once, in one write transaction: each job
    moved to its key; each edge of `job_edges` (text ids) copied to `job_links` by the keys of
    its ends, then `job_edges` dropped; `attempts` keyed by job id made again keyed by the
    job's key (`schema`'s statements make the new table and its index). Another process that
    opened the database meanwhile waits for the lock, then finds nothing to do."""
    if not any(_old(db)):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        old_edges, old_attempts = _old(db)
        if old_edges or old_attempts:
            _move_jobs(db)
        if old_edges:
            _move_edges(db)
            db.execute("DROP TABLE job_edges")
        if old_attempts:
            _move_attempts(db, schema)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _old(db: sqlite3.Connection) -> tuple[bool, bool]:
    """Whether this database has (text-keyed job_edges, attempts keyed by job id)."""
    edges = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_edges'")
    old_edges = edges.fetchone() is not None
    old_attempts = "job" not in {r[1] for r in db.execute("PRAGMA table_info(attempts)")}
    return old_edges, old_attempts


def _move_jobs(db: sqlite3.Connection) -> None:
    """Every job not at its key moves there (an UPDATE of the rowid alone fires no trigger).
    Keys are at least 2**32 (task numbers start at 1), above any rowid SQLite gave before."""
    rows = db.execute("SELECT rowid, id FROM jobs WHERE rowid < ?", (1 << INDEX_BITS,)).fetchall()
    for start in range(0, len(rows), _BATCH):
        chunk = rows[start : start + _BATCH]
        keys = Keys(db, (jid for _, jid in chunk), add=True).of()
        db.executemany(
            "UPDATE jobs SET rowid = ? WHERE rowid = ?", [(keys[jid], r) for r, jid in chunk]
        )


def _move_edges(db: sqlite3.Connection) -> None:
    cur = db.execute("SELECT parent, child, parent_status FROM job_edges")
    while rows := cur.fetchmany(_BATCH):
        keys = Keys(db, {jid for p, c, _ in rows for jid in (p, c)}, add=True).of()
        db.executemany(
            "INSERT OR IGNORE INTO job_links (parent, child, parent_status) VALUES (?,?,?)",
            [(keys[p], keys[c], s) for p, c, s in rows],
        )


def _move_attempts(db: sqlite3.Connection, schema: str) -> None:
    """The attempts table made again at the jobs' keys (an attempt of a job no longer stored
    has no key and is left out)."""
    cols = (
        "job_id, attempt, pilot_id, status, started_at, ended_at, exit_code, error_code, "
        "error_diag, log_uri, max_rss_mb"
    )
    db.execute("ALTER TABLE attempts RENAME TO attempts_old")
    db.execute("DROP INDEX IF EXISTS attempts_errors")
    for statement in _statements(schema):
        if "EXISTS attempts (" in statement or " ON attempts (" in statement:
            db.execute(statement)
    db.execute(
        f"INSERT INTO attempts (job, {cols}) SELECT j.rowid, "
        f"{', '.join('a.' + c for c in cols.split(', '))} FROM attempts_old AS a "
        f"JOIN jobs AS j ON j.id = a.job_id"
    )
    db.execute("DROP TABLE attempts_old")


def _statements(script: str) -> list[str]:
    """`script`'s statements, one by one (`executescript` would commit the transaction)."""
    found, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    return found
