"""WebhookStore on SQLite: `webhooks`, `webhook_secrets` and `deliveries` (each delivery's
document as JSON, with the columns its queries need beside it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from skypanda.adapters.local.sqlite.db import SqliteDb
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.webhooks import Delivery, DeliveryAttempt, DeliveryState, Webhook


def _hook(row: sqlite3.Row) -> Webhook:
    return Webhook(
        id=row["id"], owner=row["owner"], url=row["url"], created_at=row["created_at"],
        subject=row["subject"],
    )  # fmt: skip


class SqliteWebhooks(SqliteDb):
    def add_webhook(self, hook: Webhook) -> None:
        with self._tx() as db:
            try:
                db.execute(
                    "INSERT INTO webhooks (id, owner, url, created_at, subject) VALUES (?,?,?,?,?)",
                    (hook.id, hook.owner, hook.url, hook.created_at, hook.subject),
                )
            except sqlite3.IntegrityError as e:
                raise InvalidInput(f"webhook id {hook.id} already exists") from e

    def list_webhooks(self, owner: str | None) -> list[Webhook]:
        if owner is None:
            rows = self._read("SELECT * FROM webhooks ORDER BY created_at, id")
        else:
            rows = self._read(
                "SELECT * FROM webhooks WHERE owner = ? ORDER BY created_at, id", (owner,)
            )
        return [_hook(r) for r in rows]

    def remove_webhook(self, hook_id: str) -> Webhook:
        with self._tx() as db:
            row = db.execute("SELECT * FROM webhooks WHERE id = ?", (hook_id,)).fetchone()
            if row is None:
                raise NotFound(f"no webhook with id {hook_id!r}", webhook_id=hook_id)
            db.execute("DELETE FROM webhooks WHERE id = ?", (hook_id,))
        return _hook(row)

    def webhook_secret(self, owner: str, new: str) -> str:
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO webhook_secrets (owner, secret) VALUES (?,?)", (owner, new)
            )
            row = db.execute("SELECT secret FROM webhook_secrets WHERE owner = ?", (owner,))
            return str(row.fetchone()[0])

    def set_webhook_secret(self, owner: str, secret: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO webhook_secrets (owner, secret) VALUES (?,?) "
                "ON CONFLICT (owner) DO UPDATE SET secret = excluded.secret",
                (owner, secret),
            )

    def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO deliveries (id, owner, subject, state, next_at, "
                "created_at, tries, doc) VALUES (?,?,?,?,?,?,?,?)",
                [(d.id, d.owner, d.subject, str(d.state), d.next_at, d.created_at,
                  len(d.attempts), d.model_dump_json()) for d in deliveries],
            )  # fmt: skip

    def due_deliveries(self, now: float, limit: int) -> list[Delivery]:
        rows = self._read(
            "SELECT doc FROM deliveries WHERE state = ? AND next_at <= ? ORDER BY next_at LIMIT ?",
            (str(DeliveryState.PENDING), now, limit),
        )
        return [Delivery.model_validate_json(r["doc"]) for r in rows]

    def record_attempt(
        self, delivery: Delivery, attempt: DeliveryAttempt, state: DeliveryState, next_at: float
    ) -> bool:
        tries = len(delivery.attempts)
        moved = delivery.model_copy(
            update={"attempts": [*delivery.attempts, attempt], "state": state, "next_at": next_at}
        )
        with self._tx() as db:
            cur = db.execute(
                "UPDATE deliveries SET state = ?, next_at = ?, tries = ?, doc = ? "
                "WHERE id = ? AND tries = ?",
                (str(state), next_at, tries + 1, moved.model_dump_json(), delivery.id, tries),
            )
            return cur.rowcount == 1

    def list_deliveries(
        self, owner: str | None, *, subject: str | None = None, limit: int = 50
    ) -> list[Delivery]:
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._read(
            f"SELECT doc FROM deliveries {clause}ORDER BY created_at DESC, id LIMIT ?",
            (*args, limit),
        )
        return [Delivery.model_validate_json(r["doc"]) for r in rows]
