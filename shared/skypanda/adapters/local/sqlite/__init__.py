"""The embedded Store: one SQLite file in WAL mode, one module per aggregate.

`db` holds what they share (connections, schema and migrations, write transactions, the outbox
writer, row codecs); `tasks`, `workflows` (with the job edges), `jobs` (with task-wide bulks),
`fleet` (queues, pilots, scaler notes), `outbox`, `audit` and `views` (the monitor's reads)
each implement one port of `skypanda.ports` as a mixin over `SqliteDb`, and `SqliteStore` is
all of them: the `Store`. `rollups` keeps jobs ended per minute (triggers) for the views.
"""

from __future__ import annotations

from skypanda.adapters.local.sqlite.audit import SqliteAudit
from skypanda.adapters.local.sqlite.fleet import SqliteFleet
from skypanda.adapters.local.sqlite.jobs import SqliteJobs
from skypanda.adapters.local.sqlite.metrics import SqliteMetrics
from skypanda.adapters.local.sqlite.outbox import SqliteOutbox
from skypanda.adapters.local.sqlite.tasks import SqliteTasks
from skypanda.adapters.local.sqlite.views import SqliteViews
from skypanda.adapters.local.sqlite.watches import SqliteWatches
from skypanda.adapters.local.sqlite.webhooks import SqliteWebhooks
from skypanda.adapters.local.sqlite.workflows import SqliteWorkflows

__all__ = ["SqliteStore"]


class SqliteStore(
    SqliteTasks,
    SqliteWorkflows,
    SqliteJobs,
    SqliteFleet,
    SqliteOutbox,
    SqliteAudit,
    SqliteMetrics,
    SqliteWatches,
    SqliteWebhooks,
    SqliteViews,
):
    """Store port on SQLite. `on_events` is called after a commit that wrote outbox events."""
