"""What a handler is given: the ports, wired by the backend (local runtime or Cloud Function),
and what handlers remember between events in this process (`Memory`)."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache, TTLCache

from skypanda.domain.models import Task
from skypanda.domain.quota import Quota
from skypanda.domain.states import TaskStatus
from skypanda.domain.workflow import CompiledWorkflow
from skypanda.ports import (
    AuditLog,
    Blobs,
    Bus,
    Clock,
    Doorbell,
    FleetStore,
    JobStore,
    Launcher,
    Notifier,
    Outbox,
    Store,
    TaskStore,
    WebhookStore,
    WorkflowStore,
)

MAX_ENTRIES = 10_000
PAUSE_TTL_S = 2.0
"""How long a task's paused-or-not is reused: a pause holds released children back within
this (running and just-claimed jobs go on anyway)."""
LOADS_TTL_S = 1.0
"""How long acquires reuse what fair share read of a queue: whether several owners have jobs
waiting there and, if so, their loads and shares (a new owner's jobs wait this long at most
before sharing starts)."""


def new_id(prefix: str) -> str:
    """A random id: `prefix` + 12 hex digits (48 random bits; never sequential)."""
    return f"{prefix}{secrets.token_hex(6)}"


class Memory:
    """What handlers remember between events in one process (a Cloud Function instance serves
    many in a row): facts that never change once stored (task specs, compiled workflows, tasks
    ended for good), so no entry can go stale, and short-lived ones whose staleness is bounded
    and harmless (a task being paused, a queue's owner loads), timed by the services' clock.
    Every cache is bounded (LRU). One per Services: tests get a fresh one with their services.
    """

    def __init__(self, clock: Clock, max_entries: int = MAX_ENTRIES) -> None:
        self.tasks: LRUCache[str, Task] = LRUCache(max_entries)
        self.compiled: LRUCache[str, CompiledWorkflow] = LRUCache(max_entries)
        self.ended: LRUCache[str, TaskStatus] = LRUCache(max_entries)
        self.paused: TTLCache[str, bool] = TTLCache(max_entries, PAUSE_TTL_S, timer=clock.now)
        self.loads: TTLCache[str, Any] = TTLCache(1000, LOADS_TTL_S, timer=clock.now)
        self.noted: LRUCache[str, str] = LRUCache(1000)
        # Ends (job id, attempt) whose children the report's own request released and
        # committed (dispatch.update): the delivery of their job.ended event here skips the
        # children step, which would only find them released. A fact once committed.
        self.released: LRUCache[tuple[str, int], bool] = LRUCache(max_entries)
        # Pages of task-wide actions done here, with how many jobs each changed: an action's
        # request and the outbox's delivery of its event may run the same page at once (the
        # embedded store applies a whole task as one page); the second waits, then reports
        # the first's count instead of running it again.
        self.bulk_lock = threading.Lock()
        self.bulk_done: LRUCache[tuple[str, int], int] = LRUCache(max_entries)
        # A submitted workflow's key indexes (`domain.dag.KeyIndexes`), computed to check its
        # mappings, for its start here to split with (each can be tens of MB: a few kept).
        self.key_indexes: LRUCache[str, dict[tuple[str, str], dict[str, list[int]]]] = LRUCache(4)


@dataclass
class Services:
    store: Store
    bus: Bus
    blobs: Blobs
    clock: Clock
    launcher: Launcher | None = None
    settings: dict[str, object] = field(default_factory=dict)
    # How much one owner may have unended at once (`domain.quota`; a runtime sets it from
    # SKYPANDA_MAX_ACTIVE_TASKS / _JOBS).
    quota: Quota = field(default_factory=Quota)
    # Where notifications go (a topic, webhooks); None: nowhere (deliveries wait, pending).
    notifier: Notifier | None = None
    # Wakes pilots' long-poll acquires when jobs are activated (in the server's process);
    # None: acquires never wait (Cloud Functions, the tests' bare services).
    doorbell: Doorbell | None = None
    memory: Memory = field(init=False)

    def __post_init__(self) -> None:
        self.memory = Memory(self.clock)

    # The store by aggregate: a handler names the narrow port it uses.
    @property
    def tasks(self) -> TaskStore:
        return self.store

    @property
    def workflows(self) -> WorkflowStore:
        return self.store

    @property
    def jobs(self) -> JobStore:
        return self.store

    @property
    def fleet(self) -> FleetStore:
        return self.store

    @property
    def outbox(self) -> Outbox:
        return self.store

    @property
    def audit(self) -> AuditLog:
        return self.store

    @property
    def webhooks(self) -> WebhookStore:
        return self.store
