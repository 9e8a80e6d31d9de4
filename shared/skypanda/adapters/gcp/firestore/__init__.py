"""The Store port on Firestore (native mode), one module per aggregate.

- `base`: the client, collections, error mapping and metering attribution, transactions, the
  one-document compare-and-set, outbox writes, job versions remembered;
- `codec` (documents in and out) and `plans` (pure decisions: claim picks, commit sizes,
  outbox seqs, what a run of job changes writes);
- `tasks` (TaskStore), `workflows` (WorkflowStore: workflows and job edges), `jobs` and
  `claims` (JobStore), `bulk` (task-wide job changes, a page of job indexes at a time),
  `fleet` (FleetStore), `outbox` (Outbox), `audit` (AuditLog), `watches` (WatchStore),
  `views` (Views: the monitor's reads).

Collections (`{prefix}tasks`, `jobs`, `attempts`, `queues`, `pilots`, `events`, `workflows`,
`edges`, `scaler`, `audit`), fields and indexes are described in infra/FIRESTORE.md. How each
promise of the port is kept:

- Compare-and-set (DESIGN law 3) of one document reads it, checks its status, and commits with
  a "not updated since read" precondition (no locks; see `base._cas`). Job changes, which touch
  several documents, commit the same way against the job versions this store last read (a
  pilot's report reads its jobs just before), else in a transaction (`apply_job_changes`).
  A task-wide bulk writes each job of a page under the same precondition, re-reading and
  re-deciding (`JobBulk.selects`) the jobs that changed meanwhile. A lost compare-and-set
  returns False.
- Claims (law 4) query a small window of candidates in dispatch order, then commit the picks
  with a "not updated since read" precondition on each: a compare-and-set on the document
  version that takes no locks. The first picks are the head of the window (exact dispatch
  order for a lone pilot); after a lost race, a random sample of a wider window.
- No hot documents (law 5): job counts are aggregation queries, nothing is written per job but
  the job's own documents, and outbox sequence numbers come from the clock, not a counter.
- Bounded work per event (law 6): a task action covers `bulk_page` job indexes per call (one
  `task.bulk` event each); a release costs work proportional to the children, never to the
  workflow (`edges`, one document per (parent, child), found by parent and by child).
- Events go to `{prefix}events` in the same commit as the change that caused them; an id that
  is already there is skipped, so adding an event is idempotent.
- Billed operations per job are kept low (infra/FIRESTORE.md has the budget): a claim writes
  only the job, a live attempt's record lives in the job document until the attempt ends,
  and a pilot's report is committed without reading its jobs a second time.
"""

from __future__ import annotations

from skypanda.adapters.gcp.firestore.audit import AuditPart
from skypanda.adapters.gcp.firestore.base import BULK_PAGE
from skypanda.adapters.gcp.firestore.claims import ClaimPart
from skypanda.adapters.gcp.firestore.fleet import FleetPart
from skypanda.adapters.gcp.firestore.jobs import JobPart
from skypanda.adapters.gcp.firestore.metrics import MetricsPart
from skypanda.adapters.gcp.firestore.outbox import OutboxPart
from skypanda.adapters.gcp.firestore.tasks import TaskPart
from skypanda.adapters.gcp.firestore.views import ViewPart
from skypanda.adapters.gcp.firestore.watches import WatchPart
from skypanda.adapters.gcp.firestore.webhooks import WebhookPart
from skypanda.adapters.gcp.firestore.workflows import WorkflowPart

__all__ = ["BULK_PAGE", "FirestoreStore"]


class FirestoreStore(
    TaskPart,
    WorkflowPart,
    JobPart,
    ClaimPart,
    FleetPart,
    OutboxPart,
    AuditPart,
    MetricsPart,
    WatchPart,
    WebhookPart,
    ViewPart,
):
    """Store port on Firestore: every aggregate's part over one client (`base.FirestoreBase`
    has the constructor: `FirestoreStore(client, clock=..., prefix="", bulk_page=2000)`).
    `on_events` is called after a commit that wrote outbox events. The store owns `client`
    from here on: `close()` closes it."""
