"""Queues: apply definitions (upsert, all or nothing), list them with their load, and broker
tasks that ask for it (`queue: auto` / `queues:`).

Cost is bounded by the number of queues (a few aggregation counts per queue), never by the
number of tasks or jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skypanda.domain.broker import Load, Needs, broker
from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import AUTO_QUEUE, Pilot, Queue, TaskSpec, jsonable
from skypanda.domain.states import TaskStatus
from skypanda.handlers.ends import task_moved
from skypanda.handlers.services import Services

MAX_APPLY = 1000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """What applying one queue definition does: `add`, `update` (with the fields that change)
    or `unchanged`."""

    name: str
    action: str
    fields: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "fields": self.fields}


def _change(old: Queue | None, new: Queue) -> Change:
    if old is None:
        return Change(new.name, "add")
    before, after = old.model_dump(), new.model_dump()
    changed = sorted(k for k in after if before.get(k) != after[k])
    return Change(new.name, "update" if changed else "unchanged", changed)


def apply(svc: Services, queues: Sequence[Queue], *, dry_run: bool = False) -> list[Change]:
    """Upsert queue definitions (each replaces the stored queue of its name entirely).

    The queues are already validated (they are models); names must be distinct. With
    `dry_run`, nothing is stored. Putting the same definitions twice changes nothing.

    Raises:
        InvalidInput: too many queues, or a name given twice.
    """
    if len(queues) > MAX_APPLY:
        raise InvalidInput(f"{len(queues)} queues; at most {MAX_APPLY} at once")
    names = [q.name for q in queues]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput(f"queues defined twice: {', '.join(twice)}", field="name")
    stored = {q.name: q for q in svc.fleet.list_queues()}
    changes = [_change(stored.get(q.name), q) for q in queues]
    if not dry_run:
        for q, c in zip(queues, changes, strict=True):
            if c.action != "unchanged":
                svc.fleet.put_queue(q)
        if any(c.action != "unchanged" for c in changes):
            for task_id, queue in rebroker(svc):
                log.info("pending task %s brokered to %s", task_id, queue)
    return changes


def load(svc: Services, queue: str, live: list[Pilot] | None = None) -> Load:
    """A queue's load for brokerage: live pilots stand in for running jobs (the store counts
    activated jobs per queue, not running ones), activated jobs are the queued ones. `live`:
    the queue's live pilots, when the caller has read them already."""
    if live is None:
        live = svc.fleet.list_pilots(queue=queue, live=True)
    return Load(running=len(live), queued=svc.jobs.count_activated(queue))


def overview(svc: Services) -> list[dict[str, Any]]:
    """Each queue with its activated jobs, its pilots by state, and the scaler's last decision
    and why (what `skypanda queues` shows)."""
    out = []
    notes = svc.fleet.scaling_notes()
    for q in svc.fleet.list_queues():
        live = svc.fleet.list_pilots(queue=q.name, live=True)
        now = load(svc, q.name, live)
        by_state: dict[str, int] = {}
        for p in live:
            by_state[str(p.status)] = by_state.get(str(p.status), 0) + 1
        note, at = notes.get(q.name, ("", None))
        out.append(
            {**jsonable(q), "online": q.online, "activated": now.queued, "live_pilots": now.running,
             "pilots": by_state, "last_decision": note, "decided_at": at}
        )  # fmt: skip
    return out


class NoQueueFits(InvalidInput):
    """Brokerage found no queue for the task (the message names each queue and why)."""


REBROKER_SCAN = 1000
"""`apply` re-brokers the pending tasks among this many most recent tasks."""


def place(svc: Services, spec: TaskSpec) -> TaskSpec:
    """The task with its queue: as named, or chosen by brokerage for `queue: auto`.

    Raises:
        InvalidInput: `queues:` given along with a named queue, or no queue fits (the message
            names each queue and why it was rejected).
    """
    if spec.queue != AUTO_QUEUE:
        if spec.queues is not None:
            raise InvalidInput(
                f"task {spec.name}: queue {spec.queue} names one queue; with queues: "
                "(brokerage) leave queue out or write queue: auto",
                field="queue",
            )
        return spec
    queues = svc.fleet.list_queues()
    decision = broker(Needs.of(spec), queues, {q.name: load(svc, q.name) for q in queues})
    if decision.queue is None:
        raise NoQueueFits(
            f"task {spec.name}: no queue fits: {decision.reason}",
            field="queues",
            rejected=decision.rejected,
        )
    return spec.model_copy(update={"queue": decision.queue})


def rebroker(svc: Services) -> list[tuple[str, str]]:
    """Broker again the pending tasks (after queues changed): each that now fits a queue gets
    it and its `task.registered` event, so it is split. Returns (task id, queue) of each."""
    from skypanda.domain import events as ev

    placed = []
    for task in svc.tasks.list_tasks(limit=REBROKER_SCAN):
        if task.status is not TaskStatus.PENDING or task.spec.start_after is not None:
            continue  # a chained task waits for its trigger, on a queue chosen already
        try:
            spec = place(svc, task.spec)
        except NoQueueFits as e:
            log.info("task %s still pending: %s", task.id, e.message)
            continue
        told = [ev.task_registered(task.id), *task_moved(svc, task, TaskStatus.REGISTERED)]
        if svc.tasks.place_task(task.id, spec, told):
            placed.append((task.id, spec.queue))
    return placed
