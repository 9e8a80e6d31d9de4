"""WatchStore on SQLite: `watches`, `watch_objects` (keyed by object key: an object seen twice
is one row) and `watch_batches`. Adding an object is one `BEGIN IMMEDIATE` transaction: the
object's row (INSERT OR IGNORE), its batch's count, and the batch's close when full."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from skypanda.adapters.local.sqlite.db import SqliteDb
from skypanda.domain.errors import Conflict, NotFound
from skypanda.domain.watch import Batch, BatchStatus, WatchRule, batch_id, full

OPEN, CLOSED = str(BatchStatus.OPEN), str(BatchStatus.CLOSED)
ENDED = (str(BatchStatus.SUBMITTED), str(BatchStatus.FAILED))


def _rule(row: sqlite3.Row) -> WatchRule:
    return WatchRule.model_validate_json(row["rule"])


def _batch(row: sqlite3.Row) -> Batch:
    return Batch(
        id=row["id"], rule=row["rule"], seq=row["seq"], status=BatchStatus(row["status"]),
        count=row["count"], first_at=row["first_at"], due_at=row["due_at"],
        task_id=row["task_id"], reason=row["reason"],
    )  # fmt: skip


class SqliteWatches(SqliteDb):
    def add_watch(self, rule: WatchRule) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO watches (name, uid, owner, bucket, rule) VALUES (?,?,?,?,?)",
                    (rule.name, rule.uid, rule.owner, rule.where.bucket,
                     rule.model_dump_json(by_alias=True)),
                )  # fmt: skip
            except sqlite3.IntegrityError as e:
                raise Conflict(f"a watch named {rule.name!r} exists", watch=rule.name) from e

    def get_watch(self, name: str) -> WatchRule:
        rows = self._read("SELECT rule FROM watches WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no watch named {name!r}", watch=name)
        return _rule(rows[0])

    def list_watches(self, *, owner: str | None = None, limit: int = 100) -> list[WatchRule]:
        if owner is None:
            rows = self._read("SELECT rule FROM watches ORDER BY name LIMIT ?", (limit,))
        else:
            rows = self._read(
                "SELECT rule FROM watches WHERE owner = ? ORDER BY name LIMIT ?", (owner, limit)
            )
        return [_rule(r) for r in rows]

    def remove_watch(self, name: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM watches WHERE name = ?", (name,)).rowcount > 0

    def watches_on(self, bucket: str, limit: int = 100) -> list[WatchRule]:
        rows = self._read(
            "SELECT rule FROM watches WHERE bucket = ? ORDER BY name LIMIT ?", (bucket, limit)
        )
        return [r for r in map(_rule, rows) if r.enabled]

    def add_watched_object(
        self, rule: WatchRule, key: str, uri: str, now: float
    ) -> tuple[bool, Batch | None]:
        with self._tx() as db:
            row = db.execute("SELECT open_seq FROM watches WHERE uid = ?", (rule.uid,)).fetchone()
            if row is None:  # the rule was removed meanwhile
                return False, None
            bid = batch_id(rule.uid, row["open_seq"])
            added = db.execute(
                "INSERT OR IGNORE INTO watch_objects (key, batch, uri, seen_at) VALUES (?,?,?,?)",
                (key, bid, uri, now),
            ).rowcount
            if not added:
                return False, None
            db.execute(
                "INSERT INTO watch_batches (id, rule, seq, status, count, first_at, due_at) "
                "VALUES (?,?,?,?,1,?,?) ON CONFLICT (id) DO UPDATE SET count = count + 1",
                (bid, rule.name, row["open_seq"], OPEN, now, now + rule.every_s),
            )
            batch = _batch(
                db.execute("SELECT * FROM watch_batches WHERE id = ?", (bid,)).fetchone()
            )
            if not full(batch.count, rule):
                return True, None
            return True, self._close(db, batch)

    @staticmethod
    def _close(db: sqlite3.Connection, batch: Batch) -> Batch:
        db.execute("UPDATE watch_batches SET status = ? WHERE id = ?", (CLOSED, batch.id))
        uid = batch.id.rsplit("-", 1)[0]
        db.execute(
            "UPDATE watches SET open_seq = ? WHERE uid = ? AND open_seq = ?",
            (batch.seq + 1, uid, batch.seq),
        )
        return Batch(**{**batch.__dict__, "status": BatchStatus.CLOSED})

    def due_batches(self, now: float, limit: int) -> list[Batch]:
        rows = self._read(
            "SELECT * FROM watch_batches WHERE status = ? ORDER BY due_at LIMIT ?", (CLOSED, limit)
        )
        rows += self._read(
            "SELECT * FROM watch_batches WHERE status = ? AND due_at <= ? ORDER BY due_at LIMIT ?",
            (OPEN, now, max(0, limit - len(rows))),
        )
        return [_batch(r) for r in rows]

    def close_batch(self, batch_id: str, now: float) -> Batch | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM watch_batches WHERE id = ? AND status = ?", (batch_id, OPEN)
            ).fetchone()
            return None if row is None else self._close(db, _batch(row))

    def batch_inputs(self, batch_id: str) -> list[str]:
        rows = self._read("SELECT uri FROM watch_objects WHERE batch = ?", (batch_id,))
        return [r["uri"] for r in rows]

    def end_batch(self, batch_id: str, *, task_id: str = "", reason: str = "") -> bool:
        to = BatchStatus.SUBMITTED if task_id else BatchStatus.FAILED
        with self._tx() as db:
            cur = db.execute(
                "UPDATE watch_batches SET status = ?, task_id = ?, reason = ? "
                "WHERE id = ? AND status = ?",
                (str(to), task_id, reason, batch_id, CLOSED),
            )
            return cur.rowcount > 0

    def prune_watch_records(self, older_than: float, limit: int = 1000) -> int:
        pruned = 0
        with self._tx() as db:
            old = db.execute(
                "SELECT id FROM watch_batches WHERE status IN (?, ?) AND due_at < ? "
                "ORDER BY due_at LIMIT ?",
                (*ENDED, older_than, limit),
            ).fetchall()
            for (bid,) in old:
                cur = db.execute(
                    "DELETE FROM watch_objects WHERE key IN "
                    "(SELECT key FROM watch_objects WHERE batch = ? LIMIT ?)",
                    (bid, limit - pruned),
                )
                pruned += cur.rowcount
                if pruned >= limit:
                    break
                db.execute("DELETE FROM watch_batches WHERE id = ?", (bid,))
                pruned += 1
        return pruned

    def get_batches(self, rule_uid: str, limit: int = 100) -> Sequence[Batch]:
        rows = self._read(
            "SELECT * FROM watch_batches WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT ?",
            (f"{rule_uid}-", f"{rule_uid}.", limit),
        )
        return [_batch(r) for r in rows]
