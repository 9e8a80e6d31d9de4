"""Jobs ended per minute, counted by triggers: what the time-window views read (ports.views).

Counting the jobs that ended in a window from the jobs themselves costs a pass over every one
of them (a day of a busy campaign: hundreds of thousands of index entries, then a sort for
the grouping), which no index can shorten: SQLite has no counted ranges. So each end is counted
once when it is written, into small tables keyed by minute (schema.sql: `ends_by_*`,
`fails_by_*`), by triggers on the jobs table. Triggers, rather than the store's writers,
because every path that ends a job (a pilot's report, the sweep, a task-wide bulk `UPDATE`, a
user's retry that undoes an end) goes through the table, and the count commits or rolls back
with the change. A change away from an end takes it out of its minute again.

A database made before these tables is counted once when it is opened (`install`).
"""

from __future__ import annotations

import sqlite3

from skypanda.domain.states import JOB_FINAL, JobStatus

_FINAL = "(" + ", ".join(f"'{s}'" for s in sorted(str(s) for s in JOB_FINAL)) + ")"
_MINUTE = "CAST({r}.ended_at / 60 AS INTEGER) * 60"
_ENDED = "{r}.ended_at IS NOT NULL AND {r}.status IN " + _FINAL
_FAILED = "{r}.ended_at IS NOT NULL AND {r}.status = '" + str(JobStatus.FAILED) + "'"

# table -> (its key columns with the expression of a job row `{r}` each, which ends count)
ROLLUPS: dict[str, tuple[dict[str, str], str]] = {
    "ends_by_minute": ({"minute": _MINUTE, "status": "{r}.status"}, _ENDED),
    "ends_by_owner": ({"owner": "{r}.owner", "minute": _MINUTE, "status": "{r}.status"}, _ENDED),
    "ends_by_task": (
        {"task_id": "{r}.task_id", "minute": _MINUTE, "status": "{r}.status"},
        _ENDED,
    ),
    "fails_by_code": ({"minute": _MINUTE, "error_code": "coalesce({r}.error_code, -1)"}, _FAILED),
    "fails_by_owner_code": (
        {"owner": "{r}.owner", "minute": _MINUTE, "error_code": "coalesce({r}.error_code, -1)"},
        _FAILED,
    ),
}
_WATCHED = ("status", "ended_at", "owner", "error_code", "task_id")


def _add(table: str, row: str) -> str:
    keys, when = ROLLUPS[table]
    cols = ", ".join(keys)
    exprs = ", ".join(e.format(r=row) for e in keys.values())
    return (
        f"INSERT INTO {table} ({cols}, n) SELECT {exprs}, 1 WHERE {when.format(r=row)} "
        f"ON CONFLICT ({cols}) DO UPDATE SET n = n + 1;"
    )


def _remove(table: str, row: str) -> str:
    keys, when = ROLLUPS[table]
    match = " AND ".join(f"{c} = {e.format(r=row)}" for c, e in keys.items())
    return f"UPDATE {table} SET n = n - 1 WHERE {when.format(r=row)} AND {match};"


def triggers() -> str:
    """The triggers' DDL (idempotent)."""
    adds_new = "\n".join(_add(t, "NEW") for t in ROLLUPS)
    removes_old = "\n".join(_remove(t, "OLD") for t in ROLLUPS)
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _WATCHED)
    return f"""
CREATE TRIGGER IF NOT EXISTS jobs_ends_insert AFTER INSERT ON jobs
WHEN NEW.ended_at IS NOT NULL BEGIN
{adds_new}
END;
CREATE TRIGGER IF NOT EXISTS jobs_ends_update AFTER UPDATE OF {", ".join(_WATCHED)} ON jobs
WHEN (OLD.ended_at IS NOT NULL OR NEW.ended_at IS NOT NULL) AND ({changed}) BEGIN
{removes_old}
{adds_new}
END;
CREATE TRIGGER IF NOT EXISTS jobs_ends_delete AFTER DELETE ON jobs
WHEN OLD.ended_at IS NOT NULL BEGIN
{removes_old}
END;
"""


def missing(db: sqlite3.Connection) -> bool:
    """Whether this database has no counts yet (made before them, or new)."""
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ends_by_minute'"
    ).fetchone()
    return row is None


def install(db: sqlite3.Connection, *, backfill: bool) -> None:
    """Create the triggers; with `backfill`, count the ends already in the jobs table first,
    in the same transaction (nothing ends unseen in between)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if backfill:
            for table, (keys, when) in ROLLUPS.items():
                exprs = ", ".join(e.format(r="j") for e in keys.values())
                db.execute(
                    f"INSERT INTO {table} ({', '.join(keys)}, n) SELECT {exprs}, count(*) "
                    f"FROM jobs AS j WHERE {when.format(r='j')} GROUP BY {exprs}"
                )
        for statement in _split(triggers()):
            db.execute(statement)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _split(ddl: str) -> list[str]:
    """The CREATE TRIGGER statements of `ddl` (each ends with END;)."""
    return [s.strip() + "\nEND" for s in ddl.split("\nEND;") if s.strip()]
