"""Ports: what the handlers need from the world, as typing.Protocols.

Ports are domain-shaped (DESIGN law 4): `claim_jobs(queue, pilot, n)`, not `query(sql)`. Each
adapter uses its backend's best primitive. Every state change is compare-and-set (law 3): it
names the state it expects and returns False (or leaves the object out) when it lost.

The store is split by aggregate: `TaskStore`, `WorkflowStore` (with the job edges), `JobStore`,
`FleetStore` (queues, pilots, scaler notes), `Outbox` and `AuditLog`; `Store` is all of them,
which is what a backend implements (one module per aggregate in each backend's package).
Handlers name the narrow port they use. One contract suite (tests/contract), split along the
same seams, runs against every implementation.
"""

from __future__ import annotations

from typing import Protocol

from skypanda.domain.jobflow import JobChange
from skypanda.ports.audit import AuditLog
from skypanda.ports.fleet import FleetStore
from skypanda.ports.jobs import OWNERS_SCANNED, WAITING_COUNT_CAP, Doorbell, JobStore
from skypanda.ports.metrics import MetricsReader
from skypanda.ports.notifications import Notifier, WebhookRequest, WebhookStore
from skypanda.ports.outbox import Outbox, StoredEvent
from skypanda.ports.tasks import TaskStore
from skypanda.ports.views import Views
from skypanda.ports.watches import WatchStore
from skypanda.ports.workflows import WorkflowStore
from skypanda.ports.world import Blobs, Bus, Clock, Identity, LaunchedPilot, Launcher

__all__ = [
    "OWNERS_SCANNED",
    "WAITING_COUNT_CAP",
    "AuditLog",
    "Blobs",
    "Bus",
    "Clock",
    "Doorbell",
    "FleetStore",
    "Identity",
    "JobChange",
    "JobStore",
    "LaunchedPilot",
    "Launcher",
    "MetricsReader",
    "Notifier",
    "Outbox",
    "Store",
    "StoredEvent",
    "TaskStore",
    "Views",
    "WatchStore",
    "WebhookRequest",
    "WebhookStore",
    "WorkflowStore",
]


class Store(
    TaskStore,
    WorkflowStore,
    JobStore,
    FleetStore,
    Outbox,
    AuditLog,
    MetricsReader,
    WatchStore,
    WebhookStore,
    Views,
    Protocol,
):
    """Every aggregate of one backend (what the SQLite and Firestore stores implement)."""
