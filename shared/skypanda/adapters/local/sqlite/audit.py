"""AuditLog on SQLite: one row per entry, keyed by its time-sorted id."""

from __future__ import annotations

from skypanda.adapters.local.sqlite.db import SqliteDb
from skypanda.domain.audit import AuditEntry, check_cursor, id_floor


class SqliteAudit(SqliteDb):
    def record_audit(self, entry: AuditEntry) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO audit (id, at, actor, target_id, entry) VALUES (?,?,?,?,?)",
                (entry.id, entry.at, entry.actor, entry.target_id, entry.model_dump_json()),
            )

    def list_audit(
        self,
        *,
        target_id: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        where: list[str] = []
        args: list[object] = []
        for column, value in (("target_id", target_id), ("actor", actor)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("id >= ?")
            args.append(id_floor(since))
        if before is not None:
            where.append("id < ?")
            args.append(check_cursor(before))
        sql = "SELECT entry FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._read(f"{sql} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [AuditEntry.model_validate_json(r["entry"]) for r in rows]

    def prune_audit(self, older_than: float, limit: int = 1000) -> int:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE id < ? LIMIT ?)",
                (id_floor(older_than), limit),
            )
            return cur.rowcount
