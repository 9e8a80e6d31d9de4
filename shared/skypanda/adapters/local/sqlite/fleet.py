"""FleetStore on SQLite: queues, pilots (a heartbeat writes only the pilot's row), the
scaler's notes and the fleet's marks (the sweep's pulse, back-off resets)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from skypanda.adapters.local.sqlite.db import SqliteDb, marks
from skypanda.adapters.local.sqlite.jobs import LIVE_SQL
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.models import Pilot, Queue
from skypanda.domain.scaling import Work
from skypanda.domain.states import PILOT_FINAL, PILOT_LIVE, PilotStatus
from skypanda.ports.fleet import SweepMark


def _pilot(row: sqlite3.Row) -> Pilot:
    return _decoded(row["record"], row["heartbeat_at"])


@lru_cache(maxsize=1024)
def _decoded(record: str, heartbeat_at: float | None) -> Pilot:
    """A pilot's record, decoded once per distinct record and heartbeat: every report and
    acquire reads its pilot, whose record changes rarely (a heartbeat writes only its own
    columns). Shared: a Pilot is frozen, and holds nothing mutable."""
    pilot = Pilot.model_validate_json(record)
    return pilot.model_copy(update={"heartbeat_at": heartbeat_at})


class SqliteFleet(SqliteDb):
    # -- queues ----------------------------------------------------------------------------------
    def put_queue(self, queue: Queue) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO queues (name, spec) VALUES (?, ?)",
                (queue.name, queue.model_dump_json(by_alias=True)),
            )

    def get_queue(self, name: str) -> Queue:
        rows = self._read("SELECT spec FROM queues WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no queue named {name!r}", queue=name)
        return Queue.model_validate_json(rows[0]["spec"])

    def list_queues(self) -> list[Queue]:
        return [
            Queue.model_validate_json(r["spec"])
            for r in self._read("SELECT spec FROM queues ORDER BY name")
        ]

    def note_scaling(self, queue: str, note: str, at: float) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO scaler_notes (queue, note, at) VALUES (?, ?, ?)",
                (queue, note, at),
            )

    def scaling_notes(self) -> dict[str, tuple[str, float]]:
        rows = self._read("SELECT queue, note, at FROM scaler_notes")
        return {r["queue"]: (r["note"], r["at"]) for r in rows}

    # -- marks -----------------------------------------------------------------------------------
    def _put_mark(self, name: str, mark: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO fleet_marks (name, mark) VALUES (?, ?)",
                (name, json.dumps(mark)),
            )

    def _get_mark(self, name: str) -> dict[str, Any] | None:
        rows = self._read("SELECT mark FROM fleet_marks WHERE name = ?", (name,))
        return json.loads(rows[0]["mark"]) if rows else None

    def reset_backoff(self, queue: str, at: float) -> None:
        self._put_mark(f"backoff:{queue}", {"reset_at": at})

    def backoff_reset_at(self, queue: str) -> float | None:
        mark = self._get_mark(f"backoff:{queue}")
        return None if mark is None else float(mark["reset_at"])

    def last_sweep(self) -> SweepMark | None:
        mark = self._get_mark("sweep")
        return None if mark is None else SweepMark(**mark)

    def mark_sweep(self, mark: SweepMark) -> None:
        self._put_mark("sweep", dataclasses.asdict(mark))

    # -- pilots ----------------------------------------------------------------------------------
    def add_pilot(self, pilot: Pilot) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO pilots (id, queue, status, record, heard_at, heartbeat_at) "
                    "VALUES (?,?,?,?,?,?)",
                    (pilot.id, pilot.queue, str(pilot.status), pilot.model_dump_json(),
                     pilot.heartbeat_at or pilot.created_at, pilot.heartbeat_at),
                )  # fmt: skip
            except sqlite3.IntegrityError as e:
                raise InvalidInput(f"pilot id {pilot.id} already exists", pilot_id=pilot.id) from e

    def get_pilot(self, pilot_id: str) -> Pilot:
        rows = self._read("SELECT * FROM pilots WHERE id = ?", (pilot_id,))
        if not rows:
            raise NotFound(f"no pilot with id {pilot_id!r}", pilot_id=pilot_id)
        return _pilot(rows[0])

    def update_pilot(self, pilot: Pilot, expect: Iterable[PilotStatus]) -> bool:
        expected = [str(s) for s in expect]
        with self._tx() as db:
            cur = db.execute(
                f"UPDATE pilots SET status = ?, record = ? "
                f"WHERE id = ? AND status IN ({marks(expected)})",
                (str(pilot.status), pilot.model_dump_json(), pilot.id, *expected),
            )
            return cur.rowcount == 1

    def heartbeat(self, pilot_id: str, now: float) -> Pilot | None:
        final = [str(s) for s in PILOT_FINAL]
        with self._tx() as db:
            row = db.execute(
                f"UPDATE pilots SET heard_at = ?, heartbeat_at = ? "
                f"WHERE id = ? AND status NOT IN ({marks(final)}) RETURNING *",
                (now, now, pilot_id, *final),
            ).fetchone()
            return None if row is None else _pilot(row)

    def list_pilots(self, *, queue: str | None = None, live: bool = False) -> list[Pilot]:
        where, args = ["1 = 1"], []
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
        if live:
            states = [str(s) for s in PILOT_LIVE]
            where.append(f"status IN ({marks(states)})")
            args.extend(states)
        rows = self._read(f"SELECT * FROM pilots WHERE {' AND '.join(where)} ORDER BY rowid", args)
        return [_pilot(r) for r in rows]

    def count_failed_pilots(self, queue: str, since: float) -> int:
        rows = self._read(
            "SELECT count(*) AS n FROM pilots WHERE queue = ? AND status IN (?, ?) "
            "AND json_extract(record, '$.ended_at') >= ?",
            (queue, str(PilotStatus.MISSED), str(PilotStatus.FAILED), since),
        )
        return int(rows[0]["n"])

    def silent_pilots(self, queue: str, heard_before: float) -> list[Pilot]:
        states = [str(s) for s in PILOT_LIVE]
        rows = self._read(
            f"SELECT * FROM pilots WHERE queue = ? AND heard_at < ? "
            f"AND status IN ({marks(states)})",
            (queue, heard_before, *states),
        )
        return [_pilot(r) for r in rows]

    def held_cores(self, queue: str) -> Work:
        # The partial index of live jobs by queue (jobs_live_by_queue) finds them (a few: what
        # the pilots hold), each one's row gives its cores
        rows = self._read(
            f"SELECT count(*) AS n, total(cores) AS cores FROM jobs WHERE queue = ? AND {LIVE_SQL}",
            (queue,),
        )
        return Work(jobs=int(rows[0]["n"]), cores=int(rows[0]["cores"]))
