"""Specification of workflow files: what `compile_workflow` rejects (and how it says so), which
tasks are made at once (eager) and which wait for other tasks to end (lazy), and in what order."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from skypanda.domain import workflow as workflow_module
from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import TaskSpec
from skypanda.domain.workflow import (
    MAX_ITERATIONS,
    MAX_TASKS,
    Condition,
    JobDependency,
    Loop,
    WorkflowSpec,
    WorkflowTask,
    compile_workflow,
)
from skypanda.formats.taskfile import load_file

EXAMPLES = Path(__file__).resolve().parents[2] / "workflows"


def task(name: str, **fields: Any) -> dict[str, Any]:
    """A workflow task as a user writes it; one job unless told otherwise."""
    body: dict[str, Any] = {"name": name, "command": ["run", "{index}"], **fields}
    if not ({"inputs", "n_jobs", "graph"} & body.keys()):
        body["n_jobs"] = 1
    return body


def workflow(*tasks: dict[str, Any], **fields: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate({"name": "wf", "tasks": list(tasks), **fields})


def loop(
    name: str, tasks: list[str], until: dict[str, Any], max_iterations: int = 3
) -> dict[str, Any]:
    return {"name": name, "tasks": tasks, "until": until, "max_iterations": max_iterations}


def rejection(spec: WorkflowSpec) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        compile_workflow(spec)
    return caught.value


def rotations(cycle: list[str]) -> set[str]:
    """Every way to print a cycle (a -> b -> c -> a) starting from one of its nodes."""
    nodes = cycle[:-1] if cycle[0] == cycle[-1] else cycle
    return {" -> ".join([*nodes[i:], *nodes[:i], nodes[i]]) for i in range(len(nodes))}


# --- the models -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"task": "a"}, "exactly one"),
        ({"task": "a", "status": "failed", "flag": "x"}, "exactly one"),
        ({"task": "a", "status": "failed", "equals": "x"}, "equals goes with flag"),
        ({"task": "a", "status": "done"}, "status"),
        ({"task": "a", "flag": "x", "extra": 1}, "extra"),
    ],
)
def test_a_condition_tests_status_or_flag_exactly_once(fields: dict[str, Any], says: str) -> None:
    # Given a condition that tests neither, both, or an unknown status
    # When it is read, Then it is refused with what is wrong
    with pytest.raises(ValidationError, match=says):
        Condition.model_validate(fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"task": "a", "status": "succeeded"},
        {"task": "a", "status": "failed"},
        {"task": "a", "status": "ended"},
        {"task": "a", "flag": "converged"},
        {"task": "a", "flag": "converged", "equals": "yes"},
    ],
)
def test_the_conditions_a_user_may_write(fields: dict[str, Any]) -> None:
    assert Condition.model_validate(fields).task == "a"


@pytest.mark.parametrize("by", ["index", "visit", "_k", "Patch_2"])
def test_a_job_dependency_is_by_index_or_by_a_key_name(by: str) -> None:
    assert JobDependency(task="a", by=by).by == by


def test_a_job_dependency_is_by_index_unless_told() -> None:
    assert JobDependency(task="a").by == "index"


@pytest.mark.parametrize("by", ["", "2visit", "visit-id", "vis it", "a.b"])
def test_a_job_dependency_key_must_be_an_identifier(by: str) -> None:
    with pytest.raises(ValidationError, match="by"):
        JobDependency(task="a", by=by)


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({"visit": "v(\\d+"}, "key 'visit': bad regular expression"),
        ({"visit": "(v)(\\d+)"}, "key 'visit': use at most one group"),
    ],
)
def test_a_key_is_a_regular_expression_with_at_most_one_group(
    keys: dict[str, str], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        WorkflowTask.model_validate(task("a", inputs=["v1"], keys=keys))


@pytest.mark.parametrize("pattern", ["v\\d+", "v(\\d+)", "(?:v)(\\d+)", "^(\\w+)/"])
def test_keys_with_no_group_or_one_group_are_accepted(pattern: str) -> None:
    assert WorkflowTask.model_validate(task("a", inputs=["v1"], keys={"k": pattern})).keys


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"graph": True, "inputs": ["a"]}, "graph file: no inputs/n_jobs"),
        ({"graph": True, "n_jobs": 2}, "graph file: no inputs/n_jobs"),
        ({"graph": True, "depends": [{"task": "b"}]}, "graph file: no depends"),
        ({}, "either inputs"),
        ({"inputs": ["a"], "n_jobs": 1}, "not both"),
        ({"n_jobs": 1, "afterr": ["c"]}, "afterr"),
    ],
)
def test_a_workflow_task_takes_its_jobs_from_one_source(fields: dict[str, Any], says: str) -> None:
    # Given a task with no job source, two, or a graph task that also names inputs or parents
    body = {"name": "a", "command": ["run"], **fields}
    # When it is read, Then it is refused
    with pytest.raises(ValidationError, match=says):
        WorkflowTask.model_validate(body)


def test_a_graph_task_needs_neither_inputs_nor_n_jobs() -> None:
    assert WorkflowTask.model_validate({"name": "a", "command": ["run"], "graph": True}).graph


def test_the_stored_task_spec_drops_the_workflow_fields() -> None:
    # Given a workflow task with every workflow field set
    wt = WorkflowTask.model_validate(
        task(
            "b",
            inputs=["v1"],
            after=["a"],
            depends=[{"task": "a", "by": "k"}],
            when={"task": "a", "status": "failed"},
            keys={"k": "v(\\d)"},
            continue_on_failure=True,
        )
    )
    # When its plain task spec is taken, Then it is a TaskSpec with the same job source
    plain = wt.task_spec()
    assert type(plain) is TaskSpec
    assert plain.inputs == ["v1"]
    assert plain.name == "b"


def test_a_graph_task_spec_gets_its_job_count_from_the_graph() -> None:
    wt = WorkflowTask.model_validate({"name": "g", "command": ["run"], "graph": True})
    assert wt.task_spec(n_jobs=7).n_jobs == 7


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"max_iterations": 0}, "max_iterations"),
        ({"max_iterations": MAX_ITERATIONS + 1}, "max_iterations"),
        ({"tasks": []}, "tasks"),
        ({"name": "bad name"}, "name"),
        ({"until": {"task": "a"}}, "exactly one"),
    ],
)
def test_a_loop_has_a_body_a_name_and_a_bounded_number_of_iterations(
    fields: dict[str, Any], says: str
) -> None:
    body = {**loop("L", ["a"], {"task": "a", "status": "succeeded"}), **fields}
    with pytest.raises(ValidationError, match=says):
        Loop.model_validate(body)


def test_a_loop_may_run_up_to_max_iterations() -> None:
    lp = loop("L", ["a"], {"task": "a", "status": "succeeded"}, MAX_ITERATIONS)
    assert Loop.model_validate(lp).max_iterations == MAX_ITERATIONS


def test_a_workflow_has_at_least_one_task() -> None:
    with pytest.raises(ValidationError, match="tasks"):
        WorkflowSpec.model_validate({"name": "wf", "tasks": []})


def test_a_workflow_has_at_most_max_tasks() -> None:
    # Given one task more than the limit
    tasks = [task(f"t{i}") for i in range(MAX_TASKS + 1)]
    # When the workflow is read, Then it is refused on its task list
    with pytest.raises(ValidationError, match="tasks"):
        workflow(*tasks)
    # And exactly the limit is fine
    assert len(workflow(*tasks[:MAX_TASKS]).tasks) == MAX_TASKS


# --- names and references -------------------------------------------------------------------


def test_duplicate_task_names_are_refused_naming_the_task() -> None:
    # Given two tasks called "reco"
    spec = workflow(task("gen"), task("reco"), task("reco", after=["gen"]))
    # When it is compiled, Then the error names the duplicate
    error = rejection(spec)
    assert "duplicate task name 'reco'" in error.message
    assert error.context["task"] == "reco"


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"after": ["ghost"]}, "after"),
        ({"after": ["gen", "ghost"]}, "after"),
        ({"depends": [{"task": "ghost"}]}, "depends"),
        (
            {"depends": [{"task": "ghost", "by": "k"}], "inputs": ["x"], "keys": {"k": "x"}},
            "depends",
        ),
        ({"when": {"task": "ghost", "status": "failed"}}, "when"),
        ({"when": {"task": "ghost", "flag": "ok"}}, "when"),
    ],
)
def test_an_unknown_reference_names_the_task_and_the_unknown_name(
    fields: dict[str, Any], kind: str
) -> None:
    # Given "reco" refers to a task "ghost" that the workflow does not have
    spec = workflow(task("gen"), task("reco", **fields))
    # When it is compiled
    error = rejection(spec)
    # Then the message names the referencing task, how it refers, the unknown name, and the
    # tasks there are
    assert f"task 'reco': {kind} names unknown task 'ghost'" in error.message
    assert "(tasks: gen, reco)" in error.message
    assert error.context["task"] == "reco"


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"after": ["reco"]}, "after"),
        ({"depends": [{"task": "reco"}]}, "depends"),
        ({"when": {"task": "reco", "status": "ended"}}, "when"),
    ],
)
def test_a_task_cannot_refer_to_itself(fields: dict[str, Any], kind: str) -> None:
    error = rejection(workflow(task("reco", **fields)))
    assert f"task 'reco': {kind} names the task itself" in error.message


# --- cycles ---------------------------------------------------------------------------------


def test_a_cycle_is_printed_in_order_each_task_needed_by_the_next() -> None:
    # Given a is needed by b, b by c, and c by a (and x, outside the cycle, needs a)
    spec = workflow(
        task("x", after=["a"]),
        task("a", after=["c"]),
        task("b", after=["a"]),
        task("c", after=["b"]),
    )
    # When it is compiled
    error = rejection(spec)
    # Then the message prints the cycle in order, whichever task it starts from
    assert "workflow wf: dependency cycle: " in error.message
    assert "(each is needed by the next)" in error.message
    printed = rotations(["a", "b", "c", "a"])
    assert any(p in error.message for p in printed), error.message
    assert " -> ".join(error.context["cycle"]) in printed
    assert "x" not in error.context["cycle"]


def test_a_cycle_through_every_kind_of_reference_is_found() -> None:
    # Given a needed by b job by job, b by c through a condition, c by a at task level
    spec = workflow(
        task("a", after=["c"]),
        task("b", depends=[{"task": "a"}]),
        task("c", when={"task": "b", "status": "succeeded"}),
    )
    error = rejection(spec)
    assert " -> ".join(error.context["cycle"]) in rotations(["a", "b", "c", "a"])


def test_two_tasks_waiting_for_each_other_are_a_cycle() -> None:
    error = rejection(workflow(task("a", after=["b"]), task("b", after=["a"])))
    assert any(p in error.message for p in rotations(["a", "b", "a"])), error.message


def test_only_tasks_that_others_depend_on_job_by_job_have_jobs_with_children() -> None:
    # Given b depending on a job by job, c after b (task level), d when c succeeded, and two
    # graph tasks (a graph job's parents may be in any graph task)
    spec = workflow(
        task("a", n_jobs=2),
        task("b", n_jobs=2, depends=[{"task": "a"}]),
        task("c", after=["b"]),
        task("d", when={"task": "c", "status": "succeeded"}),
        task("g", graph=True),
        task("h", graph=True),
        graph="jobs.jsonl",
    )
    # When it is compiled, Then a's jobs and the graph tasks' may have children; no others
    cw = compile_workflow(spec)
    assert {t.name for t in spec.tasks if cw.has_job_children(t.name)} == {"a", "g", "h"}


# --- loops ----------------------------------------------------------------------------------


UNTIL_A = {"task": "a", "status": "succeeded"}


@pytest.mark.parametrize(
    ("loops", "says"),
    [
        ([loop("a", ["a"], UNTIL_A)], "loop 'a': name already used by a task or loop"),
        (
            [loop("L", ["a"], UNTIL_A), loop("L", ["b"], {"task": "b", "status": "ended"})],
            "loop 'L': name already used by a task or loop",
        ),
        ([loop("L", ["a", "ghost"], UNTIL_A)], "loop 'L': unknown task 'ghost'"),
        (
            [loop("L", ["a"], UNTIL_A), loop("M", ["b", "a"], {"task": "b", "status": "ended"})],
            "task 'a' is in two loops: L, M",
        ),
        (
            [loop("L", ["a"], {"task": "b", "status": "succeeded"})],
            "loop 'L': until tests task 'b', which is not in the loop",
        ),
        (
            [loop("L", ["a"], {"task": "ghost", "flag": "ok"})],
            "loop 'L': until tests task 'ghost', which is not in the loop",
        ),
    ],
)
def test_loops_are_checked_naming_the_loop_and_the_task(
    loops: list[dict[str, Any]], says: str
) -> None:
    # Given a loop whose name clashes, whose body names an unknown task or a task of another
    # loop, or whose until condition looks outside the loop
    spec = workflow(task("a"), task("b", after=["a"]), loops=loops)
    # When it is compiled, Then the message names the loop and the task
    assert says in rejection(spec).message


@pytest.mark.parametrize(
    "between",
    [
        task("x", after=["a"]),
        task("x", when={"task": "a", "status": "succeeded"}),
    ],
    ids=["plain task", "conditional task"],
)
def test_a_loop_must_be_closed_no_outside_task_between_two_body_tasks(
    between: dict[str, Any],
) -> None:
    # Given a loop [a, c] where c needs x, and x (not in the loop) needs a
    spec = workflow(
        task("a"),
        between,
        task("c", after=["x"]),
        loops=[loop("L", ["a", "c"], {"task": "c", "status": "succeeded"})],
    )
    # When it is compiled, Then it is refused naming the loop and the task in between
    error = rejection(spec)
    assert "'L'" in error.message
    assert "'x'" in error.message


def test_two_loops_cannot_wait_for_each_other() -> None:
    spec = workflow(
        task("a"),
        task("b", after=["a"]),
        task("c", after=["b"]),
        loops=[
            loop("L", ["a", "c"], {"task": "c", "status": "succeeded"}),
            loop("M", ["b"], {"task": "b", "status": "succeeded"}),
        ],
    )
    error = rejection(spec)
    assert "'L'" in error.message
    assert "'M'" in error.message


def test_a_closed_loop_compiles_and_records_the_loop_of_each_body_task() -> None:
    # Given a loop [fit, check] with a task before it and one after it
    spec = workflow(
        task("prep"),
        task("fit", after=["prep"]),
        task("check", after=["fit"]),
        task("publish", after=["check"]),
        loops=[loop("refine", ["fit", "check"], {"task": "check", "flag": "ok"})],
    )
    cw = compile_workflow(spec)
    assert cw.loop_of == {"fit": "refine", "check": "refine"}
    assert cw.loop("refine").max_iterations == 3
    assert cw.lazy == {"fit", "check", "publish"}


# --- job-level mappings ---------------------------------------------------------------------


@pytest.mark.parametrize(("child", "parent"), [(3, 4), (4, 3), (1, 2)])
def test_an_index_mapping_needs_equal_job_counts_naming_both_tasks_and_counts(
    child: int, parent: int
) -> None:
    # Given b waits job by job for a, with a different number of jobs
    spec = workflow(task("a", n_jobs=parent), task("b", n_jobs=child, depends=[{"task": "a"}]))
    # When it is compiled, Then the message names both tasks and both counts
    error = rejection(spec)
    expected = f"task 'b': depends on 'a' on index, but it has {child} jobs and 'a' has {parent}"
    assert expected in error.message
    assert error.context["task"] == "b"


def test_an_index_mapping_counts_jobs_after_grouping_inputs() -> None:
    # Given a has 4 inputs two per job (2 jobs) and b has 2 jobs
    spec = workflow(
        task("a", inputs=["1", "2", "3", "4"], files_per_job=2),
        task("b", n_jobs=2, depends=[{"task": "a", "by": "index"}]),
    )
    # Then the counts match and it compiles
    assert compile_workflow(spec).eager == ("a", "b")


@pytest.mark.parametrize(
    ("parent_keys", "child_keys", "missing_on"),
    [
        ({}, {"visit": "v(\\d+)"}, "a"),
        ({"visit": "v(\\d+)"}, {}, "b"),
        ({"patch": "p(\\d+)"}, {"visit": "v(\\d+)"}, "a"),
    ],
)
def test_a_key_mapping_needs_the_key_on_both_sides(
    parent_keys: dict[str, str], child_keys: dict[str, str], missing_on: str
) -> None:
    # Given b waits for a by visit but one of them declares no key "visit"
    spec = workflow(
        task("a", inputs=["v1"], keys=parent_keys),
        task("b", inputs=["v1"], keys=child_keys, depends=[{"task": "a", "by": "visit"}]),
    )
    # When it is compiled, Then the message names the dependency and the task without the key
    error = rejection(spec)
    assert "task 'b': depends on 'a' on key 'visit'" in error.message
    assert f"task {missing_on!r} declares no key 'visit'" in error.message


@pytest.mark.parametrize("side", ["a", "b"])
def test_a_key_mapping_needs_inputs_on_both_sides(side: str) -> None:
    # Given one side of a key mapping has n_jobs instead of inputs
    def source(name: str) -> dict[str, Any]:
        return {"n_jobs": 1} if name == side else {"inputs": ["v1"]}

    spec = workflow(
        task("a", keys={"visit": "v(\\d)"}, **source("a")),
        task("b", keys={"visit": "v(\\d)"}, depends=[{"task": "a", "by": "visit"}], **source("b")),
    )
    # When it is compiled, Then the message names the task without inputs and the key
    error = rejection(spec)
    assert f"task {side!r}: key 'visit' is read from inputs, and it has none" in error.message


def test_a_key_mapping_does_not_need_equal_job_counts() -> None:
    spec = workflow(
        task("a", inputs=["v1/d1", "v1/d2", "v2/d1"], keys={"visit": "v(\\d)"}),
        task(
            "b",
            inputs=["v1", "v2"],
            keys={"visit": "v(\\d)"},
            depends=[{"task": "a", "by": "visit"}],
        ),
    )
    assert compile_workflow(spec).eager == ("a", "b")


# --- graph tasks ----------------------------------------------------------------------------

GRAPH = {"name": "g", "command": ["run", "{input}"], "graph": True}


@pytest.mark.parametrize(
    ("tasks", "fields", "says"),
    [
        ([GRAPH], {}, "task 'g' says graph: true but the workflow has no graph"),
        ([task("a")], {"graph": "jobs.jsonl"}, "names a graph file but no task says graph: true"),
        (
            [GRAPH, task("a", depends=[{"task": "g"}])],
            {"graph": "jobs.jsonl"},
            "task 'a': depends on graph task 'g' job by job; use after",
        ),
        (
            [task("a"), {**GRAPH, "after": ["a"]}],
            {"graph": "jobs.jsonl"},
            "graph task 'g' cannot wait for a task to end",
        ),
        (
            [task("a"), {**GRAPH, "when": {"task": "a", "status": "failed"}}],
            {"graph": "jobs.jsonl"},
            "graph task 'g' cannot wait for a task to end",
        ),
        (
            [GRAPH],
            {"graph": "jobs.jsonl", "loops": [loop("L", ["g"], {"task": "g", "flag": "ok"})]},
            "loop 'L': graph task 'g' cannot be repeated",
        ),
    ],
    ids=["no graph file", "no graph task", "depends on graph", "after", "when", "in a loop"],
)
def test_graph_task_rules(tasks: list[dict[str, Any]], fields: dict[str, Any], says: str) -> None:
    # Given a workflow breaking one rule of graph tasks
    # When it is compiled, Then the message names the rule and the task
    assert says in rejection(workflow(*tasks, **fields)).message


def test_a_task_may_wait_for_a_whole_graph_task() -> None:
    # Given a graph task and a plain task after it
    spec = workflow(GRAPH, task("report", after=["g"]), graph="jobs.jsonl")
    # Then it compiles: the graph task is eager, the task after it lazy
    cw = compile_workflow(spec)
    assert cw.eager == ("g",)
    assert cw.lazy == {"report"}


# --- commands and size ----------------------------------------------------------------------


def test_a_bad_placeholder_in_any_task_command_is_refused() -> None:
    spec = workflow(task("a"), task("b", command=["run", "{nope}"], after=["a"]))
    assert "unknown placeholder {nope}" in rejection(spec).message


def test_the_total_number_of_jobs_is_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a limit of 10 jobs and a workflow of 6 + 5 jobs
    monkeypatch.setattr(workflow_module, "MAX_WORKFLOW_JOBS", 10)
    spec = workflow(task("a", n_jobs=6), task("b", inputs=list("abcde"), after=["a"]))
    # When it is compiled, Then it is refused with the count and the limit
    assert "workflow would have 11 jobs; the limit is 10" in rejection(spec).message


def test_a_workflow_of_exactly_the_job_limit_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow_module, "MAX_WORKFLOW_JOBS", 10)
    spec = workflow(task("a", n_jobs=6), task("b", inputs=list("abcdefgh"), files_per_job=2))
    assert compile_workflow(spec).order == ("a", "b")


def test_graph_tasks_do_not_count_towards_the_job_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # (their jobs are counted when the graph file is read)
    monkeypatch.setattr(workflow_module, "MAX_WORKFLOW_JOBS", 1)
    spec = workflow(GRAPH, task("a", after=["g"]), graph="jobs.jsonl")
    assert compile_workflow(spec).order == ("g", "a")


# --- eager and lazy, order ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "lazy"),
    [
        ([task("a")], set()),
        ([task("a"), task("b")], set()),
        ([task("a"), task("b", depends=[{"task": "a"}])], set()),
        ([task("a"), task("b", after=["a"])], {"b"}),
        ([task("a"), task("b", when={"task": "a", "status": "failed"})], {"b"}),
        ([task("a"), task("b", when={"task": "a", "flag": "ok"})], {"b"}),
        (
            [task("a"), task("b", after=["a"]), task("c", depends=[{"task": "b"}])],
            {"b", "c"},
        ),
        (
            [
                task("a"),
                task("b", after=["a"]),
                task("c", depends=[{"task": "b"}]),
                task("d", depends=[{"task": "c"}]),
                task("e", depends=[{"task": "a"}]),
            ],
            {"b", "c", "d"},
        ),
    ],
    ids=[
        "single",
        "independent",
        "job level",
        "after",
        "when status",
        "when flag",
        "downstream of lazy",
        "transitively downstream",
    ],
)
def test_tasks_that_wait_for_a_whole_task_are_lazy_and_so_is_everything_downstream(
    tasks: list[dict[str, Any]], lazy: set[str]
) -> None:
    cw = compile_workflow(workflow(*tasks))
    assert cw.lazy == lazy
    assert set(cw.eager) == {t["name"] for t in tasks} - lazy


def test_every_task_of_a_loop_is_lazy_even_with_no_prerequisite() -> None:
    spec = workflow(task("a"), loops=[loop("L", ["a"], UNTIL_A)])
    assert compile_workflow(spec).lazy == {"a"}


def test_order_puts_every_task_after_what_it_needs_and_eager_keeps_that_order() -> None:
    # Given tasks listed children first
    spec = workflow(
        task("merge", after=["left", "right"]),
        task("right", depends=[{"task": "split"}]),
        task("left", depends=[{"task": "split"}]),
        task("split"),
    )
    cw = compile_workflow(spec)
    pos = {name: i for i, name in enumerate(cw.order)}
    assert pos["split"] < pos["left"] < pos["merge"]
    assert pos["split"] < pos["right"] < pos["merge"]
    assert cw.eager == tuple(n for n in cw.order if n != "merge")
    assert cw.prerequisites == {
        "merge": {"left", "right"},
        "right": {"split"},
        "left": {"split"},
        "split": frozenset(),
    }
    assert set(cw.edges()) == {
        ("left", "merge"),
        ("right", "merge"),
        ("split", "left"),
        ("split", "right"),
    }


@pytest.mark.parametrize(
    ("workflow_flag", "task_flag", "continues"),
    [
        (False, None, False),
        (True, None, True),
        (False, True, True),
        (True, False, False),
    ],
)
def test_continue_on_failure_of_a_task_overrides_the_workflows(
    workflow_flag: bool, task_flag: bool | None, continues: bool
) -> None:
    spec = workflow(
        task("a"),
        task("b", after=["a"], continue_on_failure=task_flag),
        continue_on_failure=workflow_flag,
    )
    assert compile_workflow(spec).continues("b") is continues


# --- the example workflows ------------------------------------------------------------------


EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.yaml"))


def test_there_are_example_workflows() -> None:
    assert len(EXAMPLE_FILES) >= 5


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_file_is_valid_and_every_example_workflow_compiles(path: Path) -> None:
    spec = load_file(path)
    if not isinstance(spec, WorkflowSpec):
        assert isinstance(spec, TaskSpec)  # a plain task file (hello.yaml)
        return
    cw = compile_workflow(spec)
    assert set(cw.order) == {t.name for t in spec.tasks}


@pytest.mark.parametrize(
    ("file", "eager", "lazy"),
    [
        ("diamond.yaml", {"split", "left", "right"}, {"merge"}),
        ("rubin-drp.yaml", {"isr", "calibrate", "coadd"}, {"summary"}),
        ("scatter-gather.yaml", {"scatter", "gather"}, {"report"}),
        ("refine-loop.yaml", set(), {"fit", "check", "publish", "give_up"}),
        ("graph/quanta.yaml", {"prepare", "measure", "combine"}, set()),
    ],
)
def test_the_examples_are_classified_eager_and_lazy(
    file: str, eager: set[str], lazy: set[str]
) -> None:
    spec = load_file(EXAMPLES / file)
    assert isinstance(spec, WorkflowSpec)
    cw = compile_workflow(spec)
    assert set(cw.eager) == eager
    assert cw.lazy == lazy


# --- properties -----------------------------------------------------------------------------

Edges = dict[int, dict[int, str]]  # child -> {prerequisite: "after" | "depends"}


@st.composite
def dags(draw: st.DrawFn, min_edges: int = 0) -> tuple[int, Edges, list[int]]:
    """A random DAG over tasks 0..n-1 (edges only from lower to higher numbers), each edge a
    task-level `after` or a job-level `depends`, and the order in which the file lists them."""
    n = draw(st.integers(min_value=2 if min_edges else 1, max_value=9))
    edges: Edges = {}
    for child in range(n):
        pres = draw(st.sets(st.integers(0, child - 1), max_size=child)) if child else set()
        edges[child] = {p: draw(st.sampled_from(["after", "depends"])) for p in pres}
    if min_edges and not any(edges.values()):
        edges[1][0] = "after"
    listing = draw(st.permutations(range(n)))
    return n, edges, listing


def dag_workflow(edges: Edges, listing: list[int]) -> WorkflowSpec:
    def fields(child: int) -> dict[str, Any]:
        after = [f"t{p}" for p, kind in edges[child].items() if kind == "after"]
        depends = [{"task": f"t{p}"} for p, kind in edges[child].items() if kind == "depends"]
        return {"after": after, "depends": depends, "n_jobs": 2}

    return workflow(*(task(f"t{i}", **fields(i)) for i in listing))


@settings(max_examples=80, deadline=None)
@given(dags())
def test_any_dag_compiles_and_order_puts_every_task_after_its_prerequisites(
    dag: tuple[int, Edges, list[int]],
) -> None:
    n, edges, listing = dag
    cw = compile_workflow(dag_workflow(edges, listing))
    pos = {name: i for i, name in enumerate(cw.order)}
    assert sorted(pos) == sorted(f"t{i}" for i in range(n))
    for child, pres in edges.items():
        assert cw.prerequisites[f"t{child}"] == {f"t{p}" for p in pres}
        for p in pres:
            assert pos[f"t{p}"] < pos[f"t{child}"]
    # and a task is lazy exactly when it waits for a whole task or for a lazy one
    lazy: set[str] = set()
    for child in range(n):
        if any(k == "after" or f"t{p}" in lazy for p, k in edges[child].items()):
            lazy.add(f"t{child}")
    assert cw.lazy == lazy


@settings(max_examples=80, deadline=None)
@given(dags(min_edges=1), st.data())
def test_a_back_edge_makes_a_cycle_that_is_printed(
    dag: tuple[int, Edges, list[int]], data: st.DataObject
) -> None:
    # Given a DAG and one of its edges p -> c (p needed by c)
    _, edges, listing = dag
    c, p = data.draw(st.sampled_from([(c, p) for c, pres in edges.items() for p in pres]))
    # When p is also made to wait for c
    edges[p][c] = data.draw(st.sampled_from(["after", "depends"]))
    error = rejection(dag_workflow(edges, listing))
    # Then compiling names a cycle: a closed path, each task needed by the next, printed in order
    cycle = error.context["cycle"]
    assert cycle[0] == cycle[-1]
    for needed, needing in itertools.pairwise(cycle):
        assert int(needed[1:]) in edges[int(needing[1:])]
    assert (f"t{c}", f"t{p}") in set(itertools.pairwise(cycle))
    assert " -> ".join(cycle) in error.message
