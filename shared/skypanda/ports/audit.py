"""The audit trail's port (domain.audit): written by the API, read by admins, pruned by age."""

from __future__ import annotations

from typing import Protocol

from skypanda.domain.audit import AuditEntry


class AuditLog(Protocol):
    def record_audit(self, entry: AuditEntry) -> None: ...

    def list_audit(
        self,
        *,
        target_id: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first; `before` is the id of the last entry of the previous page.

        Raises:
            InvalidInput: `before` is not an entry id.
        """

    def prune_audit(self, older_than: float, limit: int = 1000) -> int:
        """Delete up to `limit` entries made before `older_than`; how many were deleted."""
