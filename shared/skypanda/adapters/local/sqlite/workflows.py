"""WorkflowStore on SQLite: workflows, and the dependency edges between their jobs.

An edge `(parent, child, parent_status)` has parent_status NULL while the parent has not ended,
then the parent's final status: a child is released when none of its edges is NULL, one index
seek per child (`job_links_by_child`). Its ends are the jobs' keys (keys.py), which keep the
edges of a task's jobs together: marking a thousand parents' edges writes a few pages, not a
thousand."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from skypanda.adapters.local.sqlite import keys
from skypanda.adapters.local.sqlite.db import (
    CHUNK,
    FINAL,
    SqliteDb,
    insert_task,
    marks,
    task_from_row,
)
from skypanda.adapters.local.sqlite.specs import WORKFLOW_SPECS
from skypanda.domain.dag import ParentsState
from skypanda.domain.errors import BackendUnavailable, InvalidInput, NotFound
from skypanda.domain.events import Event
from skypanda.domain.models import Task
from skypanda.domain.states import JobStatus, WorkflowStatus, advance
from skypanda.domain.workflow import Workflow

_MARK = (
    "UPDATE job_links SET parent_status = j.status FROM jobs AS j "
    "WHERE j.rowid = job_links.parent AND job_links.parent IN ({}) AND j.status IN ("
    + marks(FINAL)
    + ") RETURNING job_links.parent"
)
"""Mark the edges out of the ended ones of some parents (`{}`: their keys' marks) with their
final status; returns each marked edge's parent."""
_CHILDREN = (
    "SELECT e.child, j.id FROM json_each(?) AS p JOIN job_links AS e ON e.parent = p.value "
    "LEFT JOIN jobs AS j ON j.rowid = e.child ORDER BY p.key, e.child"
)
"""The children (key, id) of a JSON list of parents' keys, in the parents' order (then by
key: index order)."""
_STATES = (
    "SELECT c.value, "
    "EXISTS (SELECT 1 FROM job_links WHERE child = c.value AND parent_status IS NULL), "
    "(SELECT json_group_array(parent) FROM (SELECT parent FROM job_links WHERE child = c.value "
    "AND parent_status IS NOT NULL AND parent_status != ?2 LIMIT 3)) "
    "FROM json_each(?1) AS c"
)
"""Per child key of a JSON list: whether a parent is pending, and up to 3 that ended badly."""
_UNKNOWN = ParentsState(False)


def _workflow(row: sqlite3.Row) -> Workflow:
    return Workflow(
        id=row["id"],
        spec=WORKFLOW_SPECS.parse(row["id"], row["spec"]),
        owner=row["owner"],
        status=WorkflowStatus(row["status"]),
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _waits_on(wf: Workflow) -> str | None:
    """The trigger a new workflow is held by (cleared when the hold ends: `end_hold`)."""
    held = wf.status is WorkflowStatus.REGISTERED and wf.spec.start_after is not None
    return wf.spec.start_after.trigger_id if held and wf.spec.start_after else None


class SqliteWorkflows(SqliteDb):
    def add_workflow(
        self, workflow: Workflow, tasks: Sequence[Task], events: Sequence[Event]
    ) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO workflows (id, name, owner, status, reason, spec, created_at, "
                    "updated_at, waits_on) VALUES (?,?,?,?,?,?,?,?,?)",
                    (workflow.id, workflow.spec.name, workflow.owner, str(workflow.status),
                     workflow.reason, workflow.spec.model_dump_json(by_alias=True),
                     workflow.created_at, workflow.updated_at, _waits_on(workflow)),
                )  # fmt: skip
            except sqlite3.IntegrityError as e:
                raise InvalidInput(f"workflow id {workflow.id} already exists") from e
            for task in tasks:
                insert_task(db, task)
            emitted = self._emit(db, events)
        if emitted:
            self.on_events()

    def get_workflow(self, workflow_id: str) -> Workflow:
        rows = self._read("SELECT * FROM workflows WHERE id = ?", (workflow_id,))
        if not rows:
            raise NotFound(f"no workflow with id {workflow_id!r}", workflow_id=workflow_id)
        return _workflow(rows[0])

    def list_workflows(self, *, limit: int = 100) -> list[Workflow]:
        rows = self._read("SELECT * FROM workflows ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_workflow(r) for r in rows]

    def set_workflow_status(
        self,
        workflow_id: str,
        expect: Iterable[WorkflowStatus],
        to: WorkflowStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        expected = [str(s) for s in expect if advance(s, to)]
        return self._set_status("workflows", workflow_id, expected, str(to), reason, events)

    def held_workflows(self, trigger_id: str, limit: int) -> list[Workflow]:
        rows = self._read(
            "SELECT * FROM workflows WHERE waits_on = ? AND status = ? ORDER BY created_at LIMIT ?",
            (trigger_id, str(WorkflowStatus.REGISTERED), limit),
        )
        return [_workflow(r) for r in rows]

    def end_hold(
        self,
        workflow_id: str,
        to: WorkflowStatus,
        *,
        reason: str = "",
        events: Sequence[Event] = (),
    ) -> bool:
        registered = WorkflowStatus.REGISTERED
        if to is not registered:
            advance(registered, to)
        with self._tx() as db:
            cur = db.execute(
                "UPDATE workflows SET status = ?, reason = ?, waits_on = NULL, updated_at = ? "
                "WHERE id = ? AND status = ? AND waits_on IS NOT NULL",
                (str(to), reason, self._clock(), workflow_id, str(registered)),
            )
            won = cur.rowcount == 1
            emitted = won and self._emit(db, events)
        if emitted:
            self.on_events()
        return won

    def workflow_tasks(self, workflow_id: str) -> list[Task]:
        rows = self._read(
            "SELECT * FROM tasks WHERE workflow_id = ? ORDER BY created_at, iteration, name",
            (workflow_id,),
        )
        return [task_from_row(r, {}) for r in rows]

    # -- job dependencies ------------------------------------------------------------------------
    def release_children(self, parent_ids: Sequence[str]) -> dict[str, ParentsState]:
        # Most ended jobs have no children (plain tasks, sinks), and a job a pilot reported had
        # its edges marked in the report's commit (dispatch.update): find the parents with
        # edges, and those with edges left to mark, with one read; take the write lock only
        # for the latter. The children of the others are summarised all the same (reads), so
        # a release that did not commit after the marking is found again on redelivery.
        # Edges are keyed by the jobs' keys (keys.py); a parent whose task has no number has
        # none.
        try:
            known = keys.Keys(self._conn(), dict.fromkeys(parent_ids), add=False)
        except sqlite3.Error as e:
            raise BackendUnavailable(f"database read failed: {e}") from e
        to_mark: list[int] = []
        marked: list[int] = []
        for chunk in _slices(list(known.of().values())):
            rows = self._read(
                f"SELECT parent, max(parent_status IS NULL) AS unmarked FROM job_links "
                f"WHERE parent IN ({marks(chunk)}) GROUP BY parent",
                chunk,
            )
            for r in rows:
                (to_mark if r["unmarked"] else marked).append(r["parent"])
        if not to_mark:
            try:
                return self._summarise(self._conn(), marked, known)
            except sqlite3.Error as e:
                raise BackendUnavailable(f"database read failed: {e}") from e
        with self._tx() as db:
            won: set[int] = set()
            for chunk in _slices(to_mark):  # each ended parent's edges get its final status
                won.update(r[0] for r in db.execute(_MARK.format(marks(chunk)), (*chunk, *FINAL)))
            marked += [key for key in to_mark if key in won]
            return self._summarise(db, marked, known)

    @staticmethod
    def _summarise(
        db: sqlite3.Connection, parents: list[int], known: keys.Keys
    ) -> dict[str, ParentsState]:
        """The parents' state of each child of `parents` (their keys; their edges marked):
        two statements per CHUNK parents or children, each child's state read by the same two
        index seeks (`job_links_by_child`) as one at a time, so a child's cost does not grow
        with its number of parents."""
        children: dict[int, str | None] = {}
        for chunk in _slices(parents):
            for child, cid in db.execute(_CHILDREN, (json.dumps(chunk),)):
                children[child] = cid
        states: dict[int, tuple[bool, list[int]]] = {}
        for chunk in _slices(list(children)):
            for child, pending, failed in db.execute(
                _STATES, (json.dumps(chunk), str(JobStatus.FINISHED))
            ):
                states[child] = (bool(pending), json.loads(failed))
        unnamed = [k for k, cid in children.items() if cid is None]  # edges without a job
        named = known.ids([*unnamed, *(p for _, bad in states.values() for p in bad)])
        out: dict[str, ParentsState] = {}
        for child, cid in children.items():
            pending, bad = states.get(child, (False, []))
            out[cid or named[child]] = (
                ParentsState(pending, tuple(named[p] for p in bad)) if child in states else _UNKNOWN
            )
        return out

    def release_roots(self, task_id: str, now: float) -> int:
        advance(JobStatus.DEFINED, JobStatus.ACTIVATED)
        with self._tx() as db:
            rows = db.execute(
                "UPDATE jobs SET status = ?, updated_at = ? WHERE task_id = ? AND status = ? "
                "AND NOT EXISTS (SELECT 1 FROM job_links WHERE child = jobs.rowid) RETURNING queue",
                (str(JobStatus.ACTIVATED), now, task_id, str(JobStatus.DEFINED)),
            ).fetchall()
            self._activated(r[0] for r in rows)
            return len(rows)

    def retry_jobs(self, task_id: str, now: float) -> int:
        for s in (JobStatus.FAILED, JobStatus.CANCELLED):
            advance(s, JobStatus.DEFINED)
            advance(s, JobStatus.ACTIVATED)
        ended = (str(JobStatus.FAILED), str(JobStatus.CANCELLED))
        with self._tx() as db:
            rows = db.execute(
                "SELECT rowid FROM jobs WHERE task_id = ? AND status IN (?, ?)", (task_id, *ended)
            ).fetchall()
            reset = [r[0] for r in rows]
            # Every reset job waits (defined), and the edges out of it are pending again; then
            # those none of whose parents is pending are activated.
            for chunk in _slices(reset):
                db.execute(
                    f"UPDATE jobs SET status = ?, attempt = attempt + 1, failures = 0, "
                    f"pilot_id = NULL, kill_requested = 0, exit_code = NULL, error_code = NULL, "
                    f"error_diag = '', log_uri = NULL, started_at = NULL, ended_at = NULL, "
                    f"flags = '{{}}', updated_at = ? WHERE rowid IN ({marks(chunk)})",
                    (str(JobStatus.DEFINED), now, *chunk),
                )
                db.execute(
                    f"UPDATE job_links SET parent_status = NULL WHERE parent IN ({marks(chunk)})",
                    chunk,
                )
            for chunk in _slices(reset):
                db.execute(
                    f"UPDATE jobs SET status = ? WHERE rowid IN ({marks(chunk)}) AND NOT EXISTS "
                    f"(SELECT 1 FROM job_links WHERE child = jobs.rowid AND parent_status IS NULL)",
                    (str(JobStatus.ACTIVATED), *chunk),
                )
        return len(reset)


def _slices(values: list[int]) -> Iterator[list[int]]:
    """`values` in slices of CHUNK, for `IN (...)` lists and JSON arrays."""
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
