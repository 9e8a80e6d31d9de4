"""Specification of the workflow planner (what a workflow does next, given its tasks' states:
make, skip or cancel waiting tasks, go round a loop again, end) and of the graph export."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.domain.export import FORMATS, _mid, export, to_dot, to_mermaid
from skypanda.domain.planner import (
    BAD,
    EndTask,
    Plan,
    Repeat,
    Split,
    TaskFacts,
    condition_holds,
    plan,
)
from skypanda.domain.states import TASK_FINAL, TaskStatus, WorkflowStatus
from skypanda.domain.workflow import CompiledWorkflow, Condition, WorkflowSpec, compile_workflow

REG = TaskStatus.REGISTERED
READY = TaskStatus.READY
RUN = TaskStatus.RUNNING
DONE = TaskStatus.DONE
FIN = TaskStatus.FINISHED
FAIL = TaskStatus.FAILED
ABORT = TaskStatus.ABORTED
SKIP = TaskStatus.SKIPPED
CANCEL = TaskStatus.CANCELLED

Flags = dict[str, frozenset[str]]


def task(name: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "command": ["run", "{index}"], **fields}
    if not ({"inputs", "n_jobs", "graph"} & body.keys()):
        body["n_jobs"] = 1
    return body


def compiled(*tasks: dict[str, Any], **fields: Any) -> CompiledWorkflow:
    spec = WorkflowSpec.model_validate({"name": "wf", "tasks": list(tasks), **fields})
    return compile_workflow(spec)


def loop(name: str, tasks: list[str], until: dict[str, Any], max_iterations: int) -> dict[str, Any]:
    return {"name": name, "tasks": tasks, "until": until, "max_iterations": max_iterations}


def facts(
    statuses: dict[str, TaskStatus], flags: dict[str, Flags] | None = None
) -> list[TaskFacts]:
    """Iteration-1 records of a workflow's tasks."""
    flags = flags or {}
    return [TaskFacts(n, 1, s, flags.get(n, {})) for n, s in statuses.items()]


def flag(**values: str) -> Flags:
    return {k: frozenset(v.split(",")) for k, v in values.items()}


def split(*names: str, iteration: int = 1) -> tuple[Split, ...]:
    return tuple(Split(n, iteration) for n in names)


# --- conditions -----------------------------------------------------------------------------

STATUS_TABLE = [
    ("succeeded", DONE, True),
    ("succeeded", FIN, True),  # partial success: outputs exist
    ("succeeded", FAIL, False),
    ("succeeded", CANCEL, False),
    ("succeeded", ABORT, False),
    ("succeeded", SKIP, False),
    ("failed", FAIL, True),
    ("failed", CANCEL, True),
    ("failed", ABORT, True),
    ("failed", DONE, False),
    ("failed", FIN, False),
    ("failed", SKIP, False),
    ("ended", DONE, True),
    ("ended", FAIL, True),
    ("ended", SKIP, True),
    ("ended", CANCEL, True),
]


@pytest.mark.parametrize(("status", "ended", "holds"), STATUS_TABLE)
def test_a_status_condition_holds_on_how_the_task_ended(
    status: str, ended: TaskStatus, holds: bool
) -> None:
    cond = Condition.model_validate({"task": "a", "status": status})
    assert condition_holds(cond, TaskFacts("a", 1, ended)) is holds


@pytest.mark.parametrize(
    ("equals", "values", "holds"),
    [
        (None, {"yes"}, True),
        (None, {"1"}, True),
        (None, {"done"}, True),
        (None, set(), False),  # never set
        (None, {""}, False),
        (None, {"0"}, False),
        (None, {"false"}, False),
        (None, {"No"}, False),  # falsy values in any case...
        (None, {" off "}, False),  # ...and with spaces around
        (None, {"0", "1"}, True),  # any job setting it true is enough
        ("yes", {"yes"}, True),
        ("yes", {"no", "yes"}, True),
        ("yes", {"YES"}, False),  # equals is exact
        ("yes", {"no"}, False),
        ("yes", set(), False),
        ("0", {"0"}, True),  # equals may ask for a falsy value
        ("", {""}, True),
    ],
)
def test_a_flag_condition_holds_if_any_job_set_the_flag_truthy_or_to_equals(
    equals: str | None, values: set[str], holds: bool
) -> None:
    # Given a condition on the flag "converged" and the values the task's jobs wrote
    cond = Condition(task="a", flag="converged", equals=equals)
    record = TaskFacts("a", 1, DONE, {"converged": frozenset(values)} if values else {})
    # Then it holds if a value is truthy (or equals the value asked for)
    assert condition_holds(cond, record) is holds


def test_a_flag_condition_ignores_other_flags() -> None:
    cond = Condition(task="a", flag="converged")
    assert not condition_holds(cond, TaskFacts("a", 1, DONE, {"other": frozenset({"yes"})}))


# --- waiting for prerequisites --------------------------------------------------------------

# a is made at once (eager); b waits for a, c for b (lazy)
CHAIN = compiled(task("a"), task("b", after=["a"]), task("c", after=["b"]))
# merge waits for both sides
FORK = compiled(task("left"), task("right"), task("merge", after=["left", "right"]))


@pytest.mark.parametrize(
    ("cw", "statuses", "expected"),
    [
        (CHAIN, {"a": REG, "b": REG, "c": REG}, Plan()),  # eager tasks are not the planner's
        (CHAIN, {"a": READY, "b": REG, "c": REG}, Plan()),
        (CHAIN, {"a": RUN, "b": REG, "c": REG}, Plan()),
        (CHAIN, {"a": DONE, "b": REG, "c": REG}, Plan(splits=split("b"))),
        (CHAIN, {"a": FIN, "b": REG, "c": REG}, Plan(splits=split("b"))),
        (CHAIN, {"a": DONE, "b": RUN, "c": REG}, Plan()),
        (CHAIN, {"a": DONE, "b": DONE, "c": REG}, Plan(splits=split("c"))),
        (FORK, {"left": DONE, "right": RUN, "merge": REG}, Plan()),
        (FORK, {"left": FAIL, "right": RUN, "merge": REG}, Plan()),  # waits for every side
        (FORK, {"left": DONE, "right": FIN, "merge": REG}, Plan(splits=split("merge"))),
    ],
    ids=[
        "eager not split yet",
        "eager ready",
        "eager running",
        "prerequisite done",
        "prerequisite finished (partial)",
        "next one running",
        "second step",
        "one side running",
        "one side failed one running",
        "both sides ok",
    ],
)
def test_a_lazy_task_is_made_once_every_prerequisite_ended_well(
    cw: CompiledWorkflow, statuses: dict[str, TaskStatus], expected: Plan
) -> None:
    # Given the states of a workflow's tasks, When the planner looks, Then it makes the lazy
    # tasks whose prerequisites all ended well, and nothing else
    assert plan(cw, facts(statuses)) == expected


@pytest.mark.parametrize(
    ("cw", "statuses", "ends"),
    [
        (
            CHAIN,
            {"a": FAIL, "b": REG, "c": REG},
            (EndTask("b", 1, CANCEL, "missing parent: task a failed"),),
        ),
        (
            CHAIN,
            {"a": ABORT, "b": REG, "c": REG},
            (EndTask("b", 1, CANCEL, "missing parent: task a failed"),),
        ),
        (
            CHAIN,
            {"a": FAIL, "b": CANCEL, "c": REG},
            (EndTask("c", 1, CANCEL, "missing parent: task b failed"),),
        ),
        (
            FORK,
            {"left": FAIL, "right": DONE, "merge": REG},
            (EndTask("merge", 1, CANCEL, "missing parent: task left failed"),),
        ),
        (
            FORK,
            {"left": FAIL, "right": ABORT, "merge": REG},
            (EndTask("merge", 1, CANCEL, "missing parent: task left, right failed"),),
        ),
    ],
    ids=["failed", "aborted", "cancelled propagates", "one side", "both sides"],
)
def test_a_lazy_task_is_cancelled_when_a_prerequisite_failed(
    cw: CompiledWorkflow, statuses: dict[str, TaskStatus], ends: tuple[EndTask, ...]
) -> None:
    # Given a prerequisite failed, cancelled or aborted, Then the waiting task is cancelled
    # naming it (and the tasks after it follow, one plan later)
    assert plan(cw, facts(statuses)) == Plan(ends=ends)


@pytest.mark.parametrize(
    ("workflow_flag", "task_flag", "expected"),
    [
        (False, None, Plan(ends=(EndTask("b", 1, CANCEL, "missing parent: task a failed"),))),
        (True, None, Plan(splits=split("b"))),
        (False, True, Plan(splits=split("b"))),
        (True, False, Plan(ends=(EndTask("b", 1, CANCEL, "missing parent: task a failed"),))),
    ],
)
def test_continue_on_failure_makes_the_task_anyway(
    workflow_flag: bool, task_flag: bool | None, expected: Plan
) -> None:
    # Given a failed, and b after a continuing past failures (its own flag, or the workflow's)
    cw = compiled(
        task("a"),
        task("b", after=["a"], continue_on_failure=task_flag),
        continue_on_failure=workflow_flag,
    )
    # Then b is made rather than cancelled
    assert plan(cw, facts({"a": FAIL, "b": REG})) == expected


# --- conditions in a workflow ---------------------------------------------------------------

S = "split"


@pytest.mark.parametrize(
    ("when", "a", "a_flags", "outcome"),
    [
        ({"status": "succeeded"}, DONE, {}, S),
        ({"status": "succeeded"}, FIN, {}, S),
        ({"status": "succeeded"}, FAIL, {}, (SKIP, "condition not met: a succeeded")),
        ({"status": "failed"}, FAIL, {}, S),  # runs although (because) a failed
        ({"status": "failed"}, ABORT, {}, S),
        ({"status": "failed"}, DONE, {}, (SKIP, "condition not met: a failed")),
        ({"status": "ended"}, DONE, {}, S),
        ({"status": "ended"}, FAIL, {}, S),
        ({"flag": "ok"}, DONE, flag(ok="yes"), S),
        ({"flag": "ok"}, DONE, flag(ok="0"), (SKIP, "condition not met: a flag ok")),
        ({"flag": "ok"}, DONE, {}, (SKIP, "condition not met: a flag ok")),
        ({"flag": "ok", "equals": "yes"}, DONE, flag(ok="yes"), S),
        (
            {"flag": "ok", "equals": "yes"},
            DONE,
            flag(ok="maybe"),
            (SKIP, "condition not met: a flag ok=yes"),
        ),
        ({"flag": "ok", "equals": "no"}, DONE, flag(ok="no"), S),
        # a flag holds on a failed task, but a failed prerequisite still cancels
        ({"flag": "ok"}, FAIL, flag(ok="yes"), (CANCEL, "missing parent: task a failed")),
    ],
)
def test_a_conditional_task_runs_or_is_skipped_once_its_condition_task_ended(
    when: dict[str, Any], a: TaskStatus, a_flags: Flags, outcome: str | tuple[TaskStatus, str]
) -> None:
    # Given b runs when a <condition>, and a ended
    cw = compiled(task("a"), task("b", when={"task": "a", **when}))
    # When the planner looks
    got = plan(cw, facts({"a": a, "b": REG}, {"a": a_flags}))
    # Then b is made, or ended (skipped: the condition did not hold) with the reason
    if isinstance(outcome, str):
        assert got == Plan(splits=split("b"))
    else:
        status, reason = outcome
        assert got == Plan(ends=(EndTask("b", 1, status, reason),))


def test_a_conditional_task_waits_while_its_condition_task_runs() -> None:
    cw = compiled(task("a"), task("b", when={"task": "a", "status": "failed"}))
    assert plan(cw, facts({"a": RUN, "b": REG})) == Plan()


# a; b only if a succeeded; after b: c (task level) and d (job level, via c); e when b ended;
# f when b failed; g when a failed but also after b
SKIPS = compiled(
    task("a"),
    task("b", when={"task": "a", "status": "succeeded"}),
    task("c", after=["b"]),
    task("d", depends=[{"task": "c"}]),
    task("e", when={"task": "b", "status": "ended"}),
    task("f", when={"task": "b", "status": "failed"}),
    task("g", after=["b"], when={"task": "a", "status": "failed"}),
)


def test_a_skipped_task_skips_the_tasks_that_need_it_unless_they_react_to_its_end() -> None:
    # Given b was skipped (its condition did not hold)
    statuses = {"a": FAIL, "b": SKIP, "c": REG, "d": REG, "e": REG, "f": REG, "g": REG}
    # When the planner looks
    got = plan(SKIPS, facts(statuses))
    # Then c (needs b) is skipped; e (when b ended) runs; f (when b failed) does not hold;
    # g's own condition holds but it needs the skipped b
    assert got == Plan(
        splits=split("e"),
        ends=(
            EndTask("c", 1, SKIP, "needs skipped task b"),
            EndTask("f", 1, SKIP, "condition not met: b failed"),
            EndTask("g", 1, SKIP, "needs skipped task b"),
        ),
    )


def test_skipping_propagates_down_job_level_dependencies_too() -> None:
    statuses = {"a": FAIL, "b": SKIP, "c": SKIP, "d": REG, "e": DONE, "f": SKIP, "g": SKIP}
    assert plan(SKIPS, facts(statuses)) == Plan(
        ends=(EndTask("d", 1, SKIP, "needs skipped task c"),)
    )


# --- the end of a workflow ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cw", "statuses", "final", "reason"),
    [
        (CHAIN, {"a": DONE, "b": DONE, "c": DONE}, WorkflowStatus.DONE, ""),
        (CHAIN, {"a": DONE, "b": FIN, "c": DONE}, WorkflowStatus.DONE, ""),
        (
            SKIPS,
            {"a": DONE, "b": DONE, "c": DONE, "d": DONE, "e": DONE, "f": SKIP, "g": SKIP},
            WorkflowStatus.DONE,
            "",
        ),
        (CHAIN, {"a": FAIL, "b": CANCEL, "c": CANCEL}, WorkflowStatus.FAILED, "failed: a, b, c"),
        (CHAIN, {"a": DONE, "b": DONE, "c": ABORT}, WorkflowStatus.FAILED, "failed: c"),
        # continuing past a failure still ends the workflow failed
        (FORK, {"left": FAIL, "right": DONE, "merge": DONE}, WorkflowStatus.FAILED, "failed: left"),
    ],
)
def test_a_workflow_ends_done_unless_some_task_failed_or_was_cancelled(
    cw: CompiledWorkflow, statuses: dict[str, TaskStatus], final: WorkflowStatus, reason: str
) -> None:
    got = plan(cw, facts(statuses))
    assert got == Plan(final=final, reason=reason)
    assert not got.empty


def test_a_workflow_with_a_task_still_running_has_not_ended() -> None:
    got = plan(CHAIN, facts({"a": DONE, "b": DONE, "c": RUN}))
    assert got == Plan()
    assert got.empty


# --- loops ----------------------------------------------------------------------------------

# The refine-loop example: fit then check, until check sets converged, at most 3 times; then
# publish if converged=yes, give_up if check failed.
REFINE_TASKS = (
    task("fit", n_jobs=2),
    task("check", after=["fit"]),
    task("publish", when={"task": "check", "flag": "converged", "equals": "yes"}),
    task("give_up", when={"task": "check", "status": "failed"}),
)
REFINE_LOOP = loop("refine", ["fit", "check"], {"task": "check", "flag": "converged"}, 3)
REFINE = compiled(*REFINE_TASKS, loops=[REFINE_LOOP])


def refine(
    k: int, fit: TaskStatus, check: TaskStatus, converged: str | None = None, **after: TaskStatus
) -> list[TaskFacts]:
    """Records of REFINE at iteration k of the loop (earlier iterations done, not converged)."""
    records = [TaskFacts(n, i, DONE) for i in range(1, k) for n in ("fit", "check")]
    check_flags = flag(converged=converged) if converged is not None else {}
    records += [TaskFacts("fit", k, fit), TaskFacts("check", k, check, check_flags)]
    records += [TaskFacts(n, 1, after.get(n, REG)) for n in ("publish", "give_up")]
    return records


NOT_YES = EndTask("publish", 1, SKIP, "condition not met: check flag converged=yes")
NOT_FAILED = EndTask("give_up", 1, SKIP, "condition not met: check failed")


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (refine(1, REG, REG), Plan(splits=split("fit"))),
        (refine(1, RUN, REG), Plan()),
        (refine(1, DONE, REG), Plan(splits=split("check"))),
        (refine(1, DONE, RUN), Plan()),
        # the until condition does not hold: go round again (publish and give_up keep waiting)
        (refine(1, DONE, DONE), Plan(repeats=(Repeat("refine", 2, ("fit", "check")),))),
        (refine(1, DONE, DONE, "no"), Plan(repeats=(Repeat("refine", 2, ("fit", "check")),))),
        (refine(2, DONE, DONE), Plan(repeats=(Repeat("refine", 3, ("fit", "check")),))),
        # a new iteration starts from the top, the old records kept
        (refine(2, REG, REG), Plan(splits=split("fit", iteration=2))),
        (refine(2, DONE, REG), Plan(splits=split("check", iteration=2))),
        # until holds: the loop is over, the tasks after it decide
        (refine(2, DONE, DONE, "yes"), Plan(splits=split("publish"), ends=(NOT_FAILED,))),
        (refine(2, DONE, DONE, "maybe"), Plan(ends=(NOT_YES, NOT_FAILED))),
        # max_iterations reached without the until condition: over, not converged
        (refine(3, DONE, DONE), Plan(ends=(NOT_YES, NOT_FAILED))),
        # a failure stops the loop
        (refine(2, DONE, FAIL), Plan(splits=split("give_up"), ends=(NOT_YES,))),
        (refine(1, FAIL, CANCEL), Plan(splits=split("give_up"), ends=(NOT_YES,))),
    ],
    ids=[
        "start",
        "fit running",
        "fit done",
        "check running",
        "not converged",
        "converged=no is falsy",
        "second iteration not converged",
        "second iteration starts",
        "second iteration fit done",
        "converged",
        "converged but not yes",
        "max iterations",
        "check failed",
        "fit failed",
    ],
)
def test_a_loop_goes_round_until_its_condition_holds_at_most_max_iterations(
    records: list[TaskFacts], expected: Plan
) -> None:
    assert plan(REFINE, records) == expected


def test_the_latest_iteration_counts_whatever_the_order_of_the_records() -> None:
    records = refine(2, REG, REG)
    assert plan(REFINE, list(reversed(records))) == plan(REFINE, records)


@pytest.mark.parametrize(
    ("records", "final", "reason"),
    [
        (
            refine(2, DONE, DONE, "yes", publish=DONE, give_up=SKIP),
            WorkflowStatus.DONE,
            "loop refine: check flag converged at iteration 2",
        ),
        (
            refine(3, DONE, DONE, publish=SKIP, give_up=SKIP),
            WorkflowStatus.DONE,
            "loop refine: stopped after 3 iterations (check flag converged never held)",
        ),
        (
            refine(2, DONE, FAIL, publish=SKIP, give_up=DONE),
            WorkflowStatus.FAILED,
            "failed: check; loop refine: iteration 2: check failed",
        ),
        (
            refine(1, FAIL, CANCEL, publish=SKIP, give_up=DONE),
            WorkflowStatus.FAILED,
            "failed: check, fit; loop refine: iteration 1: fit, check failed",
        ),
    ],
    ids=["converged", "max iterations", "check failed", "fit failed"],
)
def test_a_workflow_with_a_loop_ends_saying_how_the_loop_ended(
    records: list[TaskFacts], final: WorkflowStatus, reason: str
) -> None:
    assert plan(REFINE, records) == Plan(final=final, reason=reason)


def test_a_loop_continuing_past_failures_goes_round_again() -> None:
    # Given check may fail without stopping the workflow
    tasks = (REFINE_TASKS[0], {**REFINE_TASKS[1], "continue_on_failure": True}, *REFINE_TASKS[2:])
    cw = compiled(*tasks, loops=[REFINE_LOOP])
    # When check fails at the first iteration, Then the loop goes round again
    assert plan(cw, refine(1, DONE, FAIL)) == Plan(repeats=(Repeat("refine", 2, ("fit", "check")),))


def test_a_loop_of_one_iteration_does_not_repeat() -> None:
    cw = compiled(*REFINE_TASKS, loops=[{**REFINE_LOOP, "max_iterations": 1}])
    assert plan(cw, refine(1, DONE, DONE)) == Plan(ends=(NOT_YES, NOT_FAILED))


# prep -> [loop: fit -> check] -> report (task level), summary (job level, after report)
AROUND = compiled(
    task("prep"),
    task("fit", after=["prep"]),
    task("check", after=["fit"]),
    task("report", after=["check"]),
    task("summary", depends=[{"task": "report"}]),
    loops=[loop("L", ["fit", "check"], {"task": "check", "status": "succeeded"}, 2)],
)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ({"prep": RUN, "fit": REG, "check": REG}, Plan()),  # the loop waits for what it needs
        ({"prep": DONE, "fit": REG, "check": REG}, Plan(splits=split("fit"))),
        ({"prep": DONE, "fit": DONE, "check": REG}, Plan(splits=split("check"))),
        # check failed: the loop is over (on a failure), and what needs check is cancelled
        (
            {"prep": DONE, "fit": DONE, "check": FAIL},
            Plan(ends=(EndTask("report", 1, CANCEL, "missing parent: task check failed"),)),
        ),
        ({"prep": DONE, "fit": DONE, "check": DONE}, Plan(splits=split("report"))),
    ],
)
def test_a_task_outside_a_loop_waits_for_the_whole_loop_to_end(
    statuses: dict[str, TaskStatus], expected: Plan
) -> None:
    records = facts({**statuses, "report": REG, "summary": REG})
    assert plan(AROUND, records) == expected


def test_a_task_after_a_loop_is_not_made_while_the_loop_goes_round() -> None:
    # Given check succeeded only with a flag the until condition needs, not there yet
    cw = compiled(
        task("fit"),
        task("check", after=["fit"]),
        task("report", after=["check"]),
        loops=[loop("L", ["fit", "check"], {"task": "check", "flag": "ok"}, 2)],
    )
    # When the loop goes round, Then report (whose prerequisite check is done) still waits
    got = plan(cw, facts({"fit": DONE, "check": DONE, "report": REG}))
    assert got == Plan(repeats=(Repeat("L", 2, ("fit", "check")),))


def test_two_loops_go_round_independently() -> None:
    cw = compiled(
        task("a"),
        task("b"),
        loops=[
            loop("A", ["a"], {"task": "a", "flag": "ok"}, 5),
            loop("B", ["b"], {"task": "b", "flag": "ok"}, 5),
        ],
    )
    records = [
        TaskFacts("a", 1, DONE),
        TaskFacts("b", 1, DONE),
        TaskFacts("b", 2, DONE, flag(ok="yes")),
    ]
    assert plan(cw, records) == Plan(repeats=(Repeat("A", 2, ("a",)),))


# --- whole runs -----------------------------------------------------------------------------

Outcome = Callable[[str, int], tuple[TaskStatus, Flags]]


def run(
    cw: CompiledWorkflow, outcome: Outcome, max_steps: int = 200
) -> tuple[Plan, dict[tuple[str, int], TaskFacts]]:
    """Apply plans as the workflow handler does, each made task ending as `outcome` says, until
    the workflow ends. Checks on the way that a task is made only once all it needs ended."""
    records: dict[tuple[str, int], TaskFacts] = {}

    def make(name: str, iteration: int) -> None:
        status, flags = outcome(name, iteration)
        records[(name, iteration)] = TaskFacts(name, iteration, status, flags)

    for name in cw.order:
        records[(name, 1)] = TaskFacts(name, 1, REG)
    for name in cw.eager:
        make(name, 1)
    for _ in range(max_steps):
        step = plan(cw, records.values())
        if step.final is not None:
            return step, records
        assert not step.empty, f"the workflow is stuck: {sorted(records.values(), key=str)}"
        latest = _latest(records.values())
        for s in step.splits:
            assert records[(s.name, s.iteration)].status is REG
            assert all(latest[p].status in TASK_FINAL for p in cw.prerequisites[s.name])
            make(s.name, s.iteration)
        for e in step.ends:
            records[(e.name, e.iteration)] = TaskFacts(e.name, e.iteration, e.status)
        for r in step.repeats:
            for name in r.tasks:
                assert (name, r.iteration) not in records
                records[(name, r.iteration)] = TaskFacts(name, r.iteration, REG)
    raise AssertionError("the workflow did not end")


def _latest(records: Iterable[TaskFacts]) -> dict[str, TaskFacts]:
    out: dict[str, TaskFacts] = {}
    for r in sorted(records, key=lambda r: r.iteration):
        out[r.name] = r
    return out


def test_the_refine_loop_converges_at_the_third_iteration_and_publishes() -> None:
    # Given check writes converged=yes from its third iteration on
    def outcome(name: str, iteration: int) -> tuple[TaskStatus, Flags]:
        if name == "check" and iteration >= 3:
            return DONE, flag(converged="yes")
        return DONE, {}

    cw = compiled(*REFINE_TASKS, loops=[{**REFINE_LOOP, "max_iterations": 5}])
    # When the workflow runs to its end
    final, records = run(cw, outcome)
    # Then it went round three times, published, did not give up, and is done
    assert final == Plan(
        final=WorkflowStatus.DONE, reason="loop refine: check flag converged at iteration 3"
    )
    assert sorted(k for k in records if k[0] == "fit") == [("fit", 1), ("fit", 2), ("fit", 3)]
    assert records[("publish", 1)].status is DONE
    assert records[("give_up", 1)].status is SKIP


def test_the_refine_loop_gives_up_when_check_fails() -> None:
    def outcome(name: str, iteration: int) -> tuple[TaskStatus, Flags]:
        return (FAIL if name == "check" and iteration == 2 else DONE), {}

    final, records = run(REFINE, outcome)
    assert final.final is WorkflowStatus.FAILED
    assert records[("give_up", 1)].status is DONE
    assert records[("publish", 1)].status is SKIP
    assert ("fit", 3) not in records


@st.composite
def workflows(draw: st.DrawFn) -> tuple[CompiledWorkflow, dict[str, tuple[TaskStatus, Flags]]]:
    """A random DAG workflow (after / depends / when edges, some continuing past failures) and
    how each of its tasks ends if made."""
    n = draw(st.integers(1, 7))
    tasks = []
    for i in range(n):
        pres = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        fields: dict[str, Any] = {"n_jobs": 1}
        after = [f"t{p}" for p in pres if draw(st.booleans())]
        fields["after"] = after
        fields["depends"] = [{"task": f"t{p}"} for p in pres if f"t{p}" not in after]
        if i and draw(st.booleans()):
            test = draw(
                st.sampled_from(
                    [
                        {"status": "succeeded"},
                        {"status": "failed"},
                        {"status": "ended"},
                        {"flag": "ok"},
                        {"flag": "ok", "equals": "yes"},
                    ]
                )
            )
            fields["when"] = {"task": f"t{draw(st.integers(0, i - 1))}", **test}
        fields["continue_on_failure"] = draw(st.sampled_from([None, True, False]))
        tasks.append(task(f"t{i}", **fields))
    outcomes = {
        f"t{i}": (
            draw(st.sampled_from([DONE, FIN, FAIL])),
            draw(st.sampled_from([{}, flag(ok="yes"), flag(ok="no")])),
        )
        for i in range(n)
    }
    cw = compiled(*tasks, continue_on_failure=draw(st.booleans()))
    return cw, outcomes


@settings(max_examples=80, deadline=None)
@given(workflows())
def test_every_dag_workflow_runs_to_an_end_that_says_whether_anything_failed(
    case: tuple[CompiledWorkflow, dict[str, tuple[TaskStatus, Flags]]],
) -> None:
    cw, outcomes = case
    # When the workflow runs, each task ending as drawn
    final, records = run(cw, lambda name, _: outcomes[name])
    latest = _latest(records.values())
    # Then every task ended, once
    assert all(r.status in TASK_FINAL for r in latest.values())
    assert len(records) == len(cw.order)
    # And the workflow failed exactly when some task failed or was cancelled
    bad = sorted(n for n, r in latest.items() if r.status in BAD)
    assert final.final is (WorkflowStatus.FAILED if bad else WorkflowStatus.DONE)
    # And a task was cancelled only after one it needs went wrong, skipped only when its
    # condition did not hold or one it needs was skipped
    for name, r in latest.items():
        pres = [latest[p] for p in cw.prerequisites[name]]
        if r.status is CANCEL:
            assert any(p.status in BAD for p in pres)
        if r.status is SKIP:
            when = cw.spec.task(name).when
            assert any(p.status is SKIP for p in pres) or (
                when is not None and not condition_holds(when, latest[when.task])
            )


# --- export ---------------------------------------------------------------------------------

DIAMOND = compiled(
    task("split", n_jobs=4),
    task("left", n_jobs=4, depends=[{"task": "split", "by": "index"}]),
    task("right", n_jobs=4, depends=[{"task": "split"}]),
    task("merge", after=["left", "right"]),
)
SCATTER = compiled(
    task("scatter", inputs=["a/1", "b/1"], keys={"group": r"^(\w+)/"}),
    task(
        "gather",
        inputs=["a", "b"],
        keys={"group": r"^(\w+)$"},
        depends=[{"task": "scatter", "by": "group"}],
    ),
)
EXAMPLES = {"diamond": DIAMOND, "scatter": SCATTER, "refine": REFINE, "skips": SKIPS}


def test_dot_draws_every_task_and_every_edge_with_how_it_waits() -> None:
    dot = to_dot(DIAMOND)
    assert dot.startswith('digraph "wf" {\n')
    assert dot.endswith("}\n")
    for name in ("split", "left", "right", "merge"):
        assert f'  "{name}" [label="{name}"];' in dot
    assert '  "split" -> "left" [label="job i"];' in dot
    assert '  "split" -> "right" [label="job i"];' in dot
    assert '  "left" -> "merge" [label="after"];' in dot
    assert '  "right" -> "merge" [label="after"];' in dot
    assert '  "scatter" -> "gather" [label="by group"];' in to_dot(SCATTER)


def test_dot_draws_a_loop_as_a_cluster_and_conditions_as_labelled_edges() -> None:
    dot = to_dot(REFINE)
    assert '  subgraph "cluster_refine" {' in dot
    assert '    label="loop refine until check flag converged, max 3";' in dot
    assert '    "fit";\n    "check";\n  }' in dot
    assert '  "fit" -> "check" [label="after"];' in dot
    assert '  "check" -> "publish" [label="when check flag converged=yes"];' in dot
    assert '  "check" -> "give_up" [label="when check failed"];' in dot


def test_dot_and_mermaid_show_the_state_of_each_task_when_given() -> None:
    states = {"split": "done", "left": "running"}
    dot = to_dot(DIAMOND, states)
    assert '"split" [label="split\\ndone"];' in dot
    assert '"left" [label="left\\nrunning"];' in dot
    assert '"merge" [label="merge"];' in dot
    mermaid = to_mermaid(DIAMOND, states)
    assert '  t_split["split<br/>done"]' in mermaid
    assert '  t_merge["merge"]' in mermaid
    assert '    t_fit["fit<br/>running"]' in to_mermaid(REFINE, {"fit": "running"})


def test_mermaid_draws_every_task_and_every_edge_with_how_it_waits() -> None:
    mermaid = to_mermaid(DIAMOND)
    assert mermaid.startswith("flowchart LR\n")
    for name in ("split", "left", "right", "merge"):
        assert f'  t_{name}["{name}"]' in mermaid
    assert "  t_split -->|job i| t_left" in mermaid
    assert "  t_left -->|after| t_merge" in mermaid
    assert "  t_scatter -->|by group| t_gather" in to_mermaid(SCATTER)


def test_mermaid_draws_a_loop_as_a_subgraph_holding_its_tasks_once() -> None:
    mermaid = to_mermaid(REFINE)
    assert (
        '  subgraph t_refine["loop refine until check flag converged"]\n'
        '    t_fit["fit"]\n'
        '    t_check["check"]\n'
        "  end\n"
    ) in mermaid
    assert mermaid.count('t_fit["fit"]') == 1
    assert '  t_publish["publish"]' in mermaid
    assert "  t_check -->|when check flag converged=yes| t_publish" in mermaid
    assert "  t_check -->|when check failed| t_give__up" in mermaid


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_both_formats_hold_every_task_and_every_edge_of_the_task_graph(name: str) -> None:
    cw = EXAMPLES[name]
    dot, mermaid = to_dot(cw), to_mermaid(cw)
    for t in cw.order:
        assert f'"{t}" [label=' in dot
        assert f'{_mid(t)}["{t}"]' in mermaid
    for a, b in cw.edges():
        assert f'"{a}" -> "{b}" [label=' in dot
        assert f"{_mid(a)} -->|" in mermaid
        assert any(
            line.startswith(f"  {_mid(a)} -->|") and line.endswith(f"| {_mid(b)}")
            for line in mermaid.splitlines()
        )


def test_mermaid_ids_replace_characters_mermaid_ids_cannot_hold() -> None:
    cw = compiled(task("step.one-a"), task("step2", after=["step.one-a"]))
    mermaid = to_mermaid(cw)
    assert '  t_step_x2eone_x2da["step.one-a"]' in mermaid
    assert "  t_step_x2eone_x2da -->|after| t_step2" in mermaid
    assert '"step.one-a" -> "step2"' in to_dot(cw)


def test_distinct_tasks_get_distinct_mermaid_ids() -> None:
    cw = compiled(task("a.b"), task("a_b"), task("a-b"))
    node_lines = [ln for ln in to_mermaid(cw).splitlines() if ln.startswith("  t_")]
    ids = [ln.split("[", 1)[0].strip() for ln in node_lines]
    assert len(set(ids)) == 3, ids


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_picks_the_format(fmt: str) -> None:
    expected = {"dot": to_dot, "mermaid": to_mermaid}[fmt](REFINE, {"fit": "done"})
    assert export(REFINE, fmt, {"fit": "done"}) == expected


def test_export_refuses_an_unknown_format_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown format 'svg'; use one of dot, mermaid"):
        export(REFINE, "svg")
