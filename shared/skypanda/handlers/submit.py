"""submit: validate a task and register it. Splitting happens on the task.registered event."""

from __future__ import annotations

from skypanda.domain import events as ev
from skypanda.domain.broker import Needs, misfits
from skypanda.domain.budget import check_task_budget
from skypanda.domain.chain import StartAfter
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.models import AUTO_QUEUE, Task, TaskSpec
from skypanda.domain.splitter import check_split, count_jobs
from skypanda.domain.states import TaskStatus
from skypanda.handlers import chain, observe, queues
from skypanda.handlers.services import Services, new_id

MAX_JOBS_PER_TASK = 1_000_000


def check_quota(svc: Services, owner: str, tasks: int, jobs: int) -> None:
    """Whether `owner` may add `tasks` tasks of `jobs` jobs now (`domain.quota`).

    Raises:
        QuotaExceeded: a limit of the deployment would be passed (named in the message).
    """
    if svc.quota.limited:
        svc.quota.check(owner, svc.tasks.owner_usage(owner), tasks, jobs)


def check_size(spec: TaskSpec) -> int:
    """Check a task's command and size (jobs, stored bytes) before anything is stored; return
    its job count.

    Raises:
        InvalidInput: bad placeholders, too many jobs, over its storage budget.
    """
    check_split(spec)
    n = count_jobs(spec)
    if n > MAX_JOBS_PER_TASK:
        raise InvalidInput(f"task would have {n} jobs; the limit is {MAX_JOBS_PER_TASK}")
    check_task_budget(spec, n)
    return n


def check_task(svc: Services, spec: TaskSpec, *, count: bool = True, brokered: bool = False) -> int:
    """Check a task against what exists (placeholders, size, queue); return its job count.
    `brokered`: the queue was chosen by brokerage (`queues.place`), not named by the user.

    Raises:
        InvalidInput: bad placeholders, too many jobs, unknown queue, resources that do not fit,
            brokerage asked for where it is not done (inside a workflow).
    """
    if spec.queue == AUTO_QUEUE or (spec.queues is not None and not brokered):
        raise InvalidInput(
            f"task {spec.name}: brokerage (queue: auto, queues:) is for single tasks; "
            "name a queue for a workflow's task",
            field="queue",
        )
    if count:
        n = check_size(spec)
    else:
        check_split(spec)
        n = 0
    try:
        queue = svc.fleet.get_queue(spec.queue)
    except NotFound as e:
        known = ", ".join(q.name for q in svc.fleet.list_queues()) or "none"
        raise InvalidInput(
            f"task {spec.name}: unknown queue {spec.queue!r} (known: {known})", field="queue"
        ) from e
    if not spec.resources.fits(queue.pilot_resources):
        raise InvalidInput(
            f"task {spec.name}: resources {spec.resources.memory_mb} MB x "
            f"{spec.resources.cores} cores do not fit queue {queue.name} "
            f"({queue.pilot_resources.memory_mb} MB x {queue.pilot_resources.cores} cores)",
            field="resources",
        )
    problems = misfits(Needs.of(spec), queue)
    if problems:
        raise InvalidInput(
            f"task {spec.name}: does not fit queue {queue.name}: {', '.join(problems)}",
            field="resources",
        )
    return n


def submit(svc: Services, spec: TaskSpec, owner: str, *, task_id: str | None = None) -> Task:
    """Register a task. Nothing is stored if the task is invalid. `task_id`: the id to give it
    (a submission by message derives it from its key); default a new random one.

    A task with `queue: auto` (or `queues:`) is brokered first: its stored spec names the
    queue chosen. When no queue fits, the task waits: stored registered (not split) with the
    status `pending` (and why in its reason), and brokered again when queues are applied.

    A task with `start_after` is stored held: pending, unsplit, until the task or workflow it
    names ends (`handlers.chain`); it must fit a queue now.

    Raises:
        InvalidInput: bad placeholders, too many jobs, unknown queue, an unknown trigger, no
            queue fits a chained task.
        QuotaExceeded: the owner has as many unended tasks or jobs as they may.
    """
    n = check_size(spec)
    check_quota(svc, owner, 1, n)
    try:
        spec = queues.place(svc, spec)
    except queues.NoQueueFits as e:
        if spec.start_after is not None:
            raise  # a chained task is placed now: nothing brokers it again once started
        pending = _pending(svc, spec, owner, e.message, task_id or new_id("t"), n)
        return observe.task_submitted(pending)
    check_task(svc, spec, count=False, brokered=True)
    if spec.start_after is not None:
        chain.check_trigger(svc, spec.start_after)
    now = svc.clock.now()
    task = Task(
        id=task_id or new_id("t"),
        spec=spec,
        owner=owner,
        status=TaskStatus.REGISTERED,
        n_jobs=n,
        created_at=now,
        updated_at=now,
    )
    if spec.start_after is not None:
        return observe.task_submitted(_held(svc, task, spec.start_after))
    svc.tasks.add_task(task, [ev.task_registered(task.id)])
    return observe.task_submitted(task)


def _held(svc: Services, task: Task, after: StartAfter) -> Task:
    """A chained task: stored pending (unsplit, no event) with what it waits for as its
    reason, until its trigger ends (`handlers.chain`); decided at once if it has ended."""
    held = task.model_copy(update={"status": TaskStatus.PENDING, "reason": after.waiting_reason()})
    svc.tasks.add_task(held, [])
    chain.decide_if_ended(svc, after)
    return svc.tasks.get_task(task.id, counts=False)


def _pending(svc: Services, spec: TaskSpec, owner: str, why: str, task_id: str, n: int) -> Task:
    """A valid task (of `n` jobs) no queue fits yet: stored pending, unsplit, with the reason;
    brokered again when queues are applied (`queues.rebroker`)."""
    now = svc.clock.now()
    task = Task(
        id=task_id, spec=spec, owner=owner, status=TaskStatus.PENDING,
        reason=why, n_jobs=n, created_at=now, updated_at=now,
    )  # fmt: skip
    svc.tasks.add_task(task, [])
    return task
