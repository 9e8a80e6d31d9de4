"""WatchStore: watch rules, the objects they saw (one input each, however often announced) and
the batches those objects fill."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from skypanda.domain.watch import Batch, WatchRule


class WatchStore(Protocol):
    """Watch rules, keyed by name; objects keyed by (rule, object); batches per rule."""

    def add_watch(self, rule: WatchRule) -> None:
        """Store a new rule (with its `uid`, `owner`, `created_at` set). Raises Conflict when a
        rule of that name exists."""

    def get_watch(self, name: str) -> WatchRule:
        """Raises NotFound."""

    def list_watches(self, *, owner: str | None = None, limit: int = 100) -> list[WatchRule]:
        """By name; only `owner`'s when given."""

    def remove_watch(self, name: str) -> bool:
        """Whether there was such a rule. Its open batch is left to close and submit."""

    def watches_on(self, bucket: str, limit: int = 100) -> list[WatchRule]:
        """The enabled rules whose source is in `bucket` (a folder, for a local source)."""

    def add_watched_object(
        self, rule: WatchRule, key: str, uri: str, now: float
    ) -> tuple[bool, Batch | None]:
        """Add an object (`key`: `domain.watch.object_key`) to the rule's open batch, in one
        commit that creates the object's record only if absent: an object seen twice is one
        input. Opens a batch when none is (its deadline `now + every_s`), and closes it when it
        holds `rule.batch` objects. Returns (whether the object was new, the batch this object
        closed or None)."""

    def due_batches(self, now: float, limit: int) -> list[Batch]:
        """Open batches past their deadline, and closed ones whose task is not yet recorded
        (a submitter stopped half-way), oldest first, at most `limit`."""

    def close_batch(self, batch_id: str, now: float) -> Batch | None:
        """Compare-and-set an open batch to closed (its rule opens the next batch for new
        objects). The batch as closed, or None when it was not open."""

    def batch_inputs(self, batch_id: str) -> list[str]:
        """The URIs of a batch's objects."""

    def end_batch(self, batch_id: str, *, task_id: str = "", reason: str = "") -> bool:
        """A closed batch's task was submitted (`task_id`) or refused (`reason`).
        Compare-and-set on the batch being closed."""

    def prune_watch_records(self, older_than: float, limit: int = 1000) -> int:
        """Delete at most `limit` records of ended batches (submitted or failed) due before
        `older_than`: the objects' records first, then the batch; returns how many."""
        ...

    def get_batches(self, rule_uid: str, limit: int = 100) -> Sequence[Batch]:
        """A rule's batches, newest first (for `watch list` and tests)."""
