"""watch (on object.finalized, and from the sweep): new objects become inputs of tasks made from
a watch rule's template, in batches of N objects or T seconds, whichever comes first.

Exactly once per object: the store creates an object's record only if absent, in the same
commit that adds it to the rule's open batch (`WatchStore.add_watched_object`), so an object
announced twice (a redelivered notification, a folder listed again, Cloud Storage's own
duplicates) is one input. A batch is closed once (compare-and-set), and its task's id is
derived from the batch: a batch submitted twice (a redelivery, the sweep racing the handler)
makes one task. A crash between the close and the submission leaves the batch closed; the
sweep submits it (`flush`).

Also the rules' management (add, list, remove), owned like tasks: users manage their own,
admins any.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from skypanda.domain.errors import Forbidden, InvalidInput, NotFound
from skypanda.domain.events import ObjectFinalized
from skypanda.domain.watch import (
    Batch,
    BatchStatus,
    WatchRule,
    batch_spec,
    batch_task_id,
    object_key,
    watches,
)
from skypanda.handlers.services import Services, new_id
from skypanda.handlers.submit import submit

log = logging.getLogger(__name__)

FLUSH_BATCHES = 20
"""Batches closed or submitted per sweep at most (bounded work per tick)."""
MAX_INPUT_CHARS = 2048


def handle(svc: Services, obj: ObjectFinalized) -> int:
    """Add the object to every rule watching it; submit the batches it fills. Returns how many
    rules took it as a new input (0 for an object seen before)."""
    if obj.name.endswith("/") or len(obj.name) > MAX_INPUT_CHARS:
        return 0  # a "folder" placeholder, or a name no task can take as an input
    now = svc.clock.now()
    taken = 0
    for rule in svc.store.watches_on(obj.bucket):
        if not watches(rule, obj.bucket, obj.name):
            continue
        key = object_key(rule.uid, obj.bucket, obj.name, obj.generation)
        new, closed = svc.store.add_watched_object(rule, key, rule.where.uri(obj.name), now)
        taken += new
        if closed is not None:
            submit_batch(svc, rule, closed)
    return taken


def flush(svc: Services, limit: int = FLUSH_BATCHES) -> int:
    """From the sweep: close the open batches past their T seconds and submit closed batches
    whose task is not recorded yet. Returns how many batches were submitted (or refused)."""
    now = svc.clock.now()
    done = 0
    for due in svc.store.due_batches(now, limit):
        batch = due if due.status is BatchStatus.CLOSED else svc.store.close_batch(due.id, now)
        if batch is None:
            continue  # closed by someone else meanwhile: they submit it
        try:
            rule = svc.store.get_watch(batch.rule)
        except NotFound:
            rule = None
        if rule is None or not batch.id.startswith(f"{rule.uid}-"):
            svc.store.end_batch(batch.id, reason=f"watch {batch.rule} was removed")
            continue
        submit_batch(svc, rule, batch)
        done += 1
    return done


def submit_batch(svc: Services, rule: WatchRule, batch: Batch) -> str:
    """Submit a closed batch's task (idempotent: its id comes from the batch); record it on the
    batch. A task the template cannot make (a queue gone, inputs that do not fit) ends the
    batch failed with the reason. Returns the task id ("" when refused)."""
    task_id = batch_task_id(batch.id)
    if not _exists(svc, task_id):
        try:
            spec = batch_spec(rule, batch, svc.store.batch_inputs(batch.id))
            submit(svc, spec, rule.owner, task_id=task_id)
        except (InvalidInput, ValidationError) as e:
            if not _exists(svc, task_id):  # not a twin submission that got there first
                why = e.message if isinstance(e, InvalidInput) else str(e)
                log.warning("watch %s: batch %s refused: %s", rule.name, batch.id, why)
                svc.store.end_batch(batch.id, reason=why[:1000])
                return ""
    svc.store.end_batch(batch.id, task_id=task_id)
    log.info("watch %s: batch %s (%d objects) is task %s", rule.name, batch.id, batch.count,
             task_id)  # fmt: skip
    return task_id


def _exists(svc: Services, task_id: str) -> bool:
    try:
        svc.tasks.get_task(task_id, counts=False)
    except NotFound:
        return False
    return True


# -- rules ------------------------------------------------------------------------------------


def add_rule(svc: Services, rule: WatchRule, owner: str) -> WatchRule:
    """Store a rule for `owner` (its template's queue checked now, not at the first batch).

    Raises:
        InvalidInput: the template names an unknown queue. Conflict: the name is taken.
    """
    queue = str(rule.template.get("queue", "local"))
    if queue != "auto" and "queues" not in rule.template:
        try:
            svc.fleet.get_queue(queue)
        except NotFound as e:
            known = ", ".join(q.name for q in svc.fleet.list_queues()) or "none"
            raise InvalidInput(
                f"watch {rule.name}: unknown queue {queue!r} (known: {known})",
                field="template.queue",
            ) from e
    stored = rule.model_copy(
        update={"owner": owner, "uid": new_id("r"), "created_at": svc.clock.now()}
    )
    svc.store.add_watch(stored)
    return stored


def list_rules(svc: Services, owner: str | None) -> list[WatchRule]:
    """`owner`'s rules (None: everyone's)."""
    return svc.store.list_watches(owner=owner)


def remove_rule(svc: Services, name: str, owner: str, *, admin: bool = False) -> None:
    """Remove a rule (its open batch is ended by the sweep, unsubmitted).

    Raises:
        NotFound; Forbidden: someone else's rule and `owner` is no admin.
    """
    rule = svc.store.get_watch(name)
    if not admin and rule.owner != owner:
        raise Forbidden(f"watch {name} belongs to {rule.owner}; {owner} cannot remove it")
    svc.store.remove_watch(name)
