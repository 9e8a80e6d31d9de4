"""Property: whatever the task, queue and workflow models accept can be stored in every backend,
read back equal, listed and (a task) killed (issue 13: nothing stored that cannot be read back).

Values are generated across each field's whole range, bounds included, and one field in three
examples is then replaced by a wild value (infinities, NaN, 2**70, "10", true, NUL, a lone
surrogate, ...). A wild value must be refused with a ValidationError, never another exception;
one the model accepts must round-trip like any other.

One store per test and backend (the `store` fixture); each example uses ids of its own.
"""

from __future__ import annotations

import itertools
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.fleet import MAX_HEARTBEAT_INTERVAL_S, MAX_LOCAL_PILOTS, MAX_PILOTS
from skypanda.domain.jobflow import new_job
from skypanda.domain.models import Queue, Task, TaskSpec
from skypanda.domain.splitter import check_split, count_jobs, split
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.domain.taskspec import MAX_FILES_PER_JOB, MAX_JOBS, MAX_SIZE_MB
from skypanda.domain.values import (
    EXIT_CODE_MAX,
    EXIT_CODE_MIN,
    MAX_CORES,
    MAX_DURATION_S,
    MAX_MEMORY_MB,
    MAX_PRIORITY,
    MIN_DURATION_S,
)
from skypanda.domain.workflow import Workflow, WorkflowSpec
from skypanda.ports import Store
from tests.support import FakeClock

from .helpers import kill

MAX_EVENTS = 10**15
SPLIT_AT_MOST = 6
"""Tasks of at most this many jobs are split and their jobs stored, read back and cancelled."""

pytestmark = pytest.mark.timeout(480)
"""A property test is its examples one after another (50 round trips to the Firestore emulator
each): pytest's 120 s for one test is too short on a busy machine, not a sign of a hang."""

PROPERTY = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one store per test; examples use their own ids
        HealthCheck.filter_too_much,
        HealthCheck.too_slow,
    ],
)

WILD: list[Any] = [
    float("inf"), float("-inf"), float("nan"), 2**63, 2**70, -(2**70), -1, 0, -0.0, 1e-9,
    5e-324, 1.7976931348623157e308, "10", "1e999", "", " ", True, False, 10.0, None, [], {},
    "\x00", "a\x00b", "\ud800", "x" * 300,
]  # fmt: skip
"""Values that break lax models: non-finite, overflowing, coercible, unstorable."""

_serial = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_serial)}"


def accepted(model: type[BaseModel], data: Any) -> Any:
    """`data` as `model`, or None when the model refuses it (only ever with ValidationError)."""
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


# --- strategies ----------------------------------------------------------------------------------

POISON = 0.05
"""How often a generated number or text is poison instead (each value on its own)."""


def sometimes(good: st.SearchStrategy[Any], bad: list[Any]) -> st.SearchStrategy[Any]:
    """`good`, or one value of `bad` with probability POISON (uniformly: `sampled_from` and
    `one_of` would favour what comes first)."""

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        rnd = draw(st.randoms(use_true_random=True))
        return rnd.choice(bad) if rnd.random() < POISON else draw(good)

    return pick()


texts = sometimes(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12),
    ["\x00", "a\x00b", "\ud800", "x\udfff", 7, None],
)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
env_names = sometimes(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True), ["A=B", "A\x00", "1A", ""]
)


def ints(lo: int, hi: int) -> st.SearchStrategy[Any]:
    """Anywhere in [lo, hi], often small, often at a bound; now and then out of range, too big
    for 64 bits, or a string or bool standing for a number."""
    good = st.one_of(
        st.integers(lo, min(hi, lo + 5)), st.sampled_from([lo, hi]), st.integers(lo, hi)
    )
    return sometimes(good, [lo - 1, hi + 1, 2**63, 2**70, -(2**70), str(lo), True, float(hi)])


def floats(lo: float, hi: float) -> st.SearchStrategy[Any]:
    """Finite numbers in [lo, hi] (tiny, huge, subnormal), or ints, as JSON gives them; now and
    then infinite, NaN, out of range, or a string or bool."""
    good = st.one_of(
        st.floats(lo, hi, allow_nan=False, allow_infinity=False),
        st.sampled_from([lo, hi]),
        st.integers(int(lo) + 1, int(hi)),
    )
    inf = float("inf")
    return sometimes(good, [inf, -inf, float("nan"), 1e308, lo - 1, str(hi), True])


durations = st.one_of(
    floats(MIN_DURATION_S, MAX_DURATION_S),
    st.builds(lambda n, u: f"{n}{u}", st.integers(1, 29), st.sampled_from(["s", "m", "h", "d"])),
)
resources = st.fixed_dictionaries(
    {},
    optional={
        "memory_mb": ints(1, MAX_MEMORY_MB),
        "cores": ints(1, MAX_CORES),
        "walltime": durations,
    },
)
words = st.one_of(texts, st.sampled_from(["{index}", "{input}", "{inputs}", "{task}", "run"]))
commands = st.builds(
    lambda first, rest: [first, *rest],
    st.sampled_from(["run", "echo", "/bin/x"]),
    st.lists(words, max_size=4),
)
inputs = st.lists(texts, min_size=1, max_size=8)


@st.composite
def split_modes(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of one split mode, as a user writes them."""
    mode = draw(st.sampled_from(["count", "files", "events", "per_input", "size", "jobs"]))
    if mode == "count":
        return {"n_jobs": draw(ints(1, MAX_JOBS))}
    if mode == "files":
        return {"inputs": draw(inputs), "files_per_job": draw(ints(1, MAX_FILES_PER_JOB))}
    if mode == "events":
        return {"n_events": draw(ints(1, MAX_EVENTS)), "events_per_job": draw(ints(1, MAX_EVENTS)),
                "first_event": draw(ints(0, MAX_EVENTS))}  # fmt: skip
    if mode == "per_input":
        per_job = draw(st.integers(1, MAX_EVENTS))  # a job never spans two inputs
        return {"inputs": draw(inputs), "events_per_job": per_job,
                "events_per_input": draw(ints(per_job, MAX_EVENTS))}  # fmt: skip
    if mode == "size":
        files = draw(inputs)
        sizes = draw(st.lists(floats(0, MAX_SIZE_MB), min_size=len(files), max_size=len(files)))
        return {"inputs": files, "input_sizes_mb": sizes,
                "size_per_job_mb": draw(floats(1e-6, MAX_SIZE_MB))}  # fmt: skip
    return {"jobs": draw(st.lists(st.lists(texts, min_size=1, max_size=3), min_size=1, max_size=6))}


retry_rules = st.lists(
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(
                ["no_retry", "retry", "increase_memory", "increase_walltime"]
            ),
            "codes": st.lists(ints(0, 2**31 - 1), min_size=1, max_size=3),
        },
        optional={
            "exit_codes": st.lists(ints(EXIT_CODE_MIN, EXIT_CODE_MAX), min_size=1, max_size=3),
            "max_retries": ints(0, 100),
            "factor": floats(1.0001, 10),
            "pattern": st.one_of(texts, st.sampled_from([r"Killed", r"(?i)out of mem", r"\d+$"])),
        },
    ),
    max_size=3,
)


@st.composite
def wild(draw: st.DrawFn, data: dict[str, Any]) -> dict[str, Any]:
    """`data`, or (one example in three) `data` with one field (or one of its fields) made
    wild."""
    pick = draw(st.randoms(use_true_random=True))  # uniform: sampled_from favours the first
    if not data or pick.random() < 2 / 3:
        return data
    key = pick.choice(sorted(data))
    value = pick.choice(WILD)
    event(f"wild {key}")
    if isinstance(data[key], dict) and data[key] and pick.random() < 0.5:
        return {**data, key: {**data[key], pick.choice(sorted(data[key])): value}}
    return {**data, key: value}


@st.composite
def task_data(draw: st.DrawFn, *, wilder: bool = True) -> dict[str, Any]:
    """A task as a user writes it; `wilder`: perhaps with one field made wild."""
    data: dict[str, Any] = {
        "name": draw(names),
        "command": draw(commands),
        "queue": "q",
        **draw(split_modes()),
        **draw(st.fixed_dictionaries({}, optional={
            "resources": resources,
            "max_attempts": ints(1, 100),
            "priority": ints(-MAX_PRIORITY, MAX_PRIORITY),
            "env": st.dictionaries(env_names, texts, max_size=4),
            "allow_partial": st.booleans(),
            "retry_rules": retry_rules,
            "outputs": st.lists(st.sampled_from(["out.txt", "*.root", "plots/*.png"]), max_size=2),
        })),
    }  # fmt: skip
    return draw(wild(data)) if wilder else data


launchers = st.one_of(
    st.just({"kind": "local"}),
    st.fixed_dictionaries(
        {
            "kind": st.just("cloudrun"),
            "project": st.just("my-project"),
            "region": st.just("europe-west1"),
            "job": st.just("pilots"),
            "image": st.just("img"),
            "max_retries": ints(0, 10),
            "timeout_s": ints(60, 86_400),
        }
    ),
    st.fixed_dictionaries(
        {"kind": st.just("gke"), "image": st.just("img")},
        optional={
            "spot": st.booleans(),
            "ttl_after_finished_s": ints(0, 604_800),
            "node_selector": st.dictionaries(texts, texts, max_size=2),
        },
    ),
)


@st.composite
def queue_data(draw: st.DrawFn) -> dict[str, Any]:
    launcher = draw(launchers)
    most = MAX_LOCAL_PILOTS if launcher["kind"] == "local" else MAX_PILOTS
    max_pilots = draw(st.one_of(st.integers(0, 5), st.just(most), st.integers(0, most)))
    interval = draw(st.floats(MIN_DURATION_S, MAX_HEARTBEAT_INTERVAL_S))
    data: dict[str, Any] = {
        "name": draw(names),
        "launcher": launcher,
        "max_pilots": max_pilots,
        "min_pilots": draw(ints(0, max_pilots)),
        "heartbeat_interval_s": interval,
        "heartbeat_timeout_s": draw(floats(interval * 1.5, MAX_DURATION_S)),
        **draw(st.fixed_dictionaries({}, optional={
            "status": st.sampled_from(["online", "offline", "test"]),
            "mode": st.sampled_from(["pull", "push"]),
            "pilot_resources": resources,
            "max_memory_per_core_mb": ints(1, MAX_MEMORY_MB),
            "max_walltime_s": durations,
            "disk_gb": floats(0.001, 1_000_000),
            "gpus": ints(0, 64),
            "idle_timeout_s": durations,
            "looping_timeout_s": durations,
            "log_flush_interval_s": durations,
            "jobs_per_acquire": ints(1, 1000),
            "max_log_mb": ints(1, 256),
            "shares": st.dictionaries(texts.filter(bool), floats(0, 1_000_000), max_size=3),
            "max_new_per_cycle": ints(1, 1000),
            "max_queued": ints(1, 10_000),
        })),
    }  # fmt: skip
    return draw(wild(data))


@st.composite
def workflow_data(draw: st.DrawFn) -> dict[str, Any]:
    """A small workflow: tasks a, b, c..., each after some earlier ones."""
    tasks: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 3))):
        task = {**draw(task_data(wilder=False)), "name": string.ascii_lowercase[i]}
        earlier = [t["name"] for t in tasks]
        if earlier:
            task["after"] = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2))
        task["continue_on_failure"] = draw(st.sampled_from([None, True, False]))
        tasks.append(task)
    data = {"name": draw(names), "tasks": tasks, "continue_on_failure": draw(st.booleans())}
    return draw(wild(data))


# --- properties ----------------------------------------------------------------------------------


def _jobs_of(task: Task) -> list[Any]:
    """The task's jobs as the split handler makes them, when it is small and splittable."""
    try:
        check_split(task.spec)
        if count_jobs(task.spec) > SPLIT_AT_MOST:
            return []
        return [new_job(task, spec, task.created_at) for spec in split(task.spec)]
    except InvalidInput:
        return []  # submission refuses it; storing the spec is still tested


@PROPERTY
@given(data=task_data())
def test_an_accepted_task_is_stored_read_listed_and_killed(
    store: Store, clock: FakeClock, data: dict[str, Any]
) -> None:
    # Given whatever task the model accepts
    spec = accepted(TaskSpec, data)
    assume(spec is not None)
    now = clock.advance(1)
    task = Task(id=unique("t"), spec=spec, owner="alice", created_at=now, updated_at=now)
    jobs = _jobs_of(task)
    event("split into jobs" if jobs else "not split")
    task = task.model_copy(update={"n_jobs": len(jobs)})

    # When it is stored (and split, when small)
    store.add_task(task, [])
    if jobs:
        assert store.add_jobs(task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY)

    # Then it reads back equal, its jobs too, and it is listed
    read = store.get_task(task.id, counts=False)
    assert read.spec == spec
    assert read.model_dump(exclude={"status"}) == task.model_dump(exclude={"status"})
    for job in jobs:
        assert store.get_job(job.id).model_dump() == job.model_dump()
    assert task.id in {t.id for t in store.list_tasks(limit=1000)}

    # And it can be killed: aborted, its queued jobs cancelled
    kill(store, task.id, "test", now=clock.advance(1))
    assert store.get_task(task.id).status is TaskStatus.ABORTED
    assert {store.get_job(j.id).status for j in jobs} <= {JobStatus.CANCELLED}


@PROPERTY
@given(data=queue_data())
def test_an_accepted_queue_is_stored_read_and_listed(store: Store, data: dict[str, Any]) -> None:
    # Given whatever queue the model accepts, under a name of its own
    queue = accepted(Queue, data)
    assume(queue is not None)
    queue = queue.model_copy(update={"name": unique("q")})

    # When it is stored, Then it reads back equal and is listed (every queue still reads)
    store.put_queue(queue)
    assert store.get_queue(queue.name) == queue
    assert queue in store.list_queues()


@PROPERTY
@given(data=workflow_data())
def test_an_accepted_workflow_is_stored_read_and_listed(
    store: Store, clock: FakeClock, data: dict[str, Any]
) -> None:
    # Given whatever workflow the model accepts
    spec = accepted(WorkflowSpec, data)
    assume(spec is not None)
    now = clock.advance(1)
    workflow = Workflow(id=unique("w"), spec=spec, owner="alice", created_at=now, updated_at=now)

    # When it is stored, Then it reads back equal and is listed
    store.add_workflow(workflow, [], [])
    assert store.get_workflow(workflow.id) == workflow
    assert workflow.id in {w.id for w in store.list_workflows(limit=1000)}


@pytest.mark.parametrize("value", WILD)
def test_wild_values_are_refused_only_with_validation_errors(value: Any) -> None:
    # Whatever a wild value does to a model, it is a ValidationError (a 422), never a crash
    for model, data in [
        (TaskSpec, {"name": "t", "command": ["run"], "n_jobs": value}),
        (TaskSpec, {"name": "t", "command": ["run", value], "n_jobs": 1}),
        (TaskSpec, {"name": "t", "command": ["run"], "n_jobs": 1, "env": {"A": value}}),
        (Queue, {"name": "q", "heartbeat_timeout_s": value}),
        (Queue, {"name": "q", "shares": {"a": value}}),
    ]:
        made = accepted(model, data)
        if made is not None:
            assert type(made).model_validate_json(made.model_dump_json(by_alias=True)) == made
