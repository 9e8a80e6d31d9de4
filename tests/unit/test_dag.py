"""Specification of job-level dependencies: which parent jobs a job waits for (by index, by a key
read from inputs, or from an explicit job graph), and what a waiting job becomes once they end."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skypanda.domain import dag as dag_module
from skypanda.domain.dag import (
    GraphJob,
    ParentsState,
    child_status,
    input_groups,
    key_index,
    key_values,
    missing_parent,
    parents_by_job,
    read_graph,
    summarize,
)
from skypanda.domain.errors import InvalidInput
from skypanda.domain.states import JOB_FINAL, JobStatus
from skypanda.domain.workflow import MAX_PARENTS_PER_JOB, WorkflowTask


def wtask(name: str, **fields: Any) -> WorkflowTask:
    body: dict[str, Any] = {"name": name, "command": ["run", "{input}"], **fields}
    if not ({"inputs", "n_jobs", "graph"} & body.keys()):
        body["n_jobs"] = 1
    return WorkflowTask.model_validate(body)


def by_name(*tasks: WorkflowTask) -> dict[str, WorkflowTask]:
    return {t.name: t for t in tasks}


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "inputs", "values"),
    [
        (r"v(\d+)", ["v101/d1"], {"101"}),  # the group
        (r"v\d+", ["v101/d1"], {"v101"}),  # no group: the whole match
        (r"p(\d+)", ["v101:p1+p2"], {"1", "2"}),  # every match in an input
        (r"^(\w+)/", ["a/1", "a/2", "b/1"], {"a", "b"}),  # every input, values once
        (r"v(\d+)", ["d1", "d2"], set()),  # no match, no value
        (r"(?:run|v)(\d+)", ["run7-v8"], {"7", "8"}),
    ],
)
def test_key_values_are_every_match_or_its_group(
    pattern: str, inputs: list[str], values: set[str]
) -> None:
    assert key_values(re.compile(pattern), inputs) == values


def test_a_key_value_is_always_a_string_even_with_an_optional_group() -> None:
    # Given a key whose group is optional, and inputs where it matches with and without it
    values = key_values(re.compile(r"v(\d+)?"), ["v", "v7"])
    # Then every value is text (a match without the group carries no value)
    assert all(isinstance(v, str) for v in values), values


@pytest.mark.parametrize(
    ("inputs", "files_per_job", "index"),
    [
        (["a/1", "a/2", "a/3", "b/1", "b/2"], 1, {"a": [0, 1, 2], "b": [3, 4]}),
        (["a/1", "a/2", "b/1"], 2, {"a": [0], "b": [1]}),
        (["a/1", "b/1", "b/2"], 2, {"a": [0], "b": [0, 1]}),  # a job may carry several values
        (["a/1", "x", "b/1"], 1, {"a": [0], "b": [2]}),  # a job may carry none
    ],
)
def test_key_index_lists_the_jobs_carrying_each_value_in_index_order(
    inputs: list[str], files_per_job: int, index: dict[str, list[int]]
) -> None:
    t = wtask("scatter", inputs=inputs, files_per_job=files_per_job, keys={"group": r"^(\w+)/"})
    assert dict(key_index(t, "group")) == index


def test_input_groups_follow_the_splitter_and_an_n_jobs_task_has_none() -> None:
    grouped = wtask("a", inputs=list("abcde"), files_per_job=2)
    assert list(input_groups(grouped)) == [["a", "b"], ["c", "d"], ["e"]]
    assert list(input_groups(wtask("b", n_jobs=3))) == []


# --- parents by index and by key --------------------------------------------------------------


def test_by_index_job_i_waits_for_job_i() -> None:
    # Given b (3 jobs) depends on a by index
    a = wtask("a", n_jobs=3)
    b = wtask("b", n_jobs=3, depends=[{"task": "a", "by": "index"}])
    # Then each job waits for the job of a with its index
    assert list(parents_by_job(b, by_name(a, b))) == [[("a", 0)], [("a", 1)], [("a", 2)]]


def test_a_task_without_depends_has_no_parents_per_job() -> None:
    a = wtask("a", n_jobs=2)
    assert list(parents_by_job(a, by_name(a))) == [[], []]


def test_by_key_a_job_waits_for_every_job_sharing_the_value() -> None:
    # Given the scatter-gather example: gather a/b/c waits for the scatter jobs of its group
    scatter = wtask(
        "scatter",
        inputs=["a/1", "a/2", "a/3", "b/1", "b/2", "c/1", "c/2", "c/3", "c/4"],
        keys={"group": r"^(\w+)/"},
    )
    gather = wtask(
        "gather",
        inputs=["a", "b", "c"],
        keys={"group": r"^(\w+)$"},
        depends=[{"task": "scatter", "by": "group"}],
    )
    # When the parents are found
    parents = list(parents_by_job(gather, by_name(scatter, gather)))
    # Then each gather job waits for exactly its group's scatter jobs
    assert parents == [
        [("scatter", 0), ("scatter", 1), ("scatter", 2)],
        [("scatter", 3), ("scatter", 4)],
        [("scatter", 5), ("scatter", 6), ("scatter", 7), ("scatter", 8)],
    ]


def test_by_key_is_many_to_many_a_patch_waits_for_every_visit_overlapping_it() -> None:
    # Given the Rubin example: each visit overlaps several patches, each patch several visits
    isr = wtask(
        "isr",
        inputs=[f"v{v}/d{d}" for v in (101, 102, 103) for d in (1, 2)],
        keys={"visit": r"v(\d+)"},
    )
    calibrate = wtask(
        "calibrate",
        inputs=["v101:p1+p2", "v102:p2+p3", "v103:p1+p3"],
        keys={"visit": r"v(\d+)", "patch": r"p(\d+)"},
        depends=[{"task": "isr", "by": "visit"}],
    )
    coadd = wtask(
        "coadd",
        inputs=["p1", "p2", "p3"],
        keys={"patch": r"p(\d+)"},
        depends=[{"task": "calibrate", "by": "patch"}],
    )
    tasks = by_name(isr, calibrate, coadd)
    # When parents are found, Then a visit waits for its detectors...
    assert list(parents_by_job(calibrate, tasks)) == [
        [("isr", 0), ("isr", 1)],
        [("isr", 2), ("isr", 3)],
        [("isr", 4), ("isr", 5)],
    ]
    # ...and a patch for every visit overlapping it (each visit feeding two patches)
    assert list(parents_by_job(coadd, tasks)) == [
        [("calibrate", 0), ("calibrate", 2)],
        [("calibrate", 0), ("calibrate", 1)],
        [("calibrate", 1), ("calibrate", 2)],
    ]


def test_a_job_carrying_several_values_waits_for_the_union_once_each() -> None:
    # Given a child job whose inputs carry groups a and b, and parent jobs a/1, a/2+b/1, b/2
    parent = wtask("p", inputs=["a/1", "a/2 b/1", "b/2"], keys={"g": r"(\w)/"})
    child = wtask(
        "c",
        inputs=["a", "b"],
        files_per_job=2,
        keys={"g": r"^(\w)$"},
        depends=[{"task": "p", "by": "g"}],
    )
    # Then it waits for every parent job once, in index order
    assert list(parents_by_job(child, by_name(parent, child))) == [[("p", 0), ("p", 1), ("p", 2)]]


def test_several_dependencies_add_up_in_the_order_they_are_listed() -> None:
    a = wtask("a", inputs=["x1", "x2"], keys={"k": r"x(\d)"})
    b = wtask("b", n_jobs=2)
    c = wtask(
        "c",
        inputs=["x2", "x1"],
        keys={"k": r"x(\d)"},
        depends=[{"task": "b", "by": "index"}, {"task": "a", "by": "k"}],
    )
    assert list(parents_by_job(c, by_name(a, b, c))) == [
        [("b", 0), ("a", 1)],
        [("b", 1), ("a", 0)],
    ]


def test_parents_are_found_lazily_one_job_at_a_time() -> None:
    # Given a child whose second job matches nothing
    parent = wtask("p", inputs=["a/1"], keys={"g": r"(\w)/"})
    child = wtask("c", inputs=["a", "z"], keys={"g": r"^(\w)$"}, depends=[{"task": "p", "by": "g"}])
    jobs = parents_by_job(child, by_name(parent, child))
    # Then the first job's parents come before the error about the second
    assert next(jobs) == [("p", 0)]
    with pytest.raises(InvalidInput):
        next(jobs)


def test_a_key_value_no_parent_carries_names_the_job_the_key_and_the_value() -> None:
    # Given coadd patch p4, which no calibrate job overlaps
    calibrate = wtask("calibrate", inputs=["v101:p1+p2"], keys={"patch": r"p(\d+)"})
    coadd = wtask(
        "coadd",
        inputs=["p1", "p4"],
        keys={"patch": r"p(\d+)"},
        depends=[{"task": "calibrate", "by": "patch"}],
    )
    # When parents are found, Then the error names the task, the job, the key value and parent
    with pytest.raises(InvalidInput) as caught:
        list(parents_by_job(coadd, by_name(calibrate, coadd)))
    assert caught.value.message == "task 'coadd' job 1: patch='4' matches no job of 'calibrate'"
    assert caught.value.context["task"] == "coadd"


def test_a_job_without_the_key_in_its_inputs_is_named_with_its_inputs() -> None:
    parent = wtask("p", inputs=["a/1"], keys={"g": r"(\w)/"})
    child = wtask(
        "c", inputs=["a", "??"], keys={"g": r"^(\w)$"}, depends=[{"task": "p", "by": "g"}]
    )
    with pytest.raises(InvalidInput) as caught:
        list(parents_by_job(child, by_name(parent, child)))
    message = caught.value.message
    assert "task 'c' job 1 (inputs ['??']): no value of key 'g' in its inputs" in message
    assert "jobs of 'p'" in message


def test_a_job_waits_for_at_most_max_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a limit of 2 parents per job and a gather job with 3 scatter parents
    monkeypatch.setattr(dag_module, "MAX_PARENTS_PER_JOB", 2)
    scatter = wtask("scatter", inputs=["a/1", "a/2", "a/3", "b/1"], keys={"g": r"(\w)/"})
    gather = wtask(
        "gather", inputs=["b", "a"], keys={"g": r"^(\w)$"}, depends=[{"task": "scatter", "by": "g"}]
    )
    # When parents are found, Then the job over the limit is named with its count
    jobs = parents_by_job(gather, by_name(scatter, gather))
    assert next(jobs) == [("scatter", 3)]
    with pytest.raises(InvalidInput) as caught:
        next(jobs)
    assert "task 'gather' job 1 would wait for 3 jobs; the limit is 2" in caught.value.message
    assert "use after:" in caught.value.message


# --- explicit job graphs --------------------------------------------------------------------

GRAPH_TASKS = by_name(
    wtask("prepare", graph=True),
    wtask("measure", graph=True),
    wtask("combine", graph=True),
    wtask("plain"),
)


def line(
    id_: str, task: str, inputs: list[str] | None = None, parents: list[str] | None = None
) -> str:
    node: dict[str, Any] = {"id": id_, "task": task}
    if inputs is not None:
        node["inputs"] = inputs
    if parents is not None:
        node["parents"] = parents
    return json.dumps(node)


QUANTA = [
    line("prep-a", "prepare", ["a"]),
    line("prep-b", "prepare", ["b"]),
    line("prep-c", "prepare", ["c"]),
    line("meas-ab", "measure", ["a", "b"], ["prep-a", "prep-b"]),
    line("meas-bc", "measure", ["b", "c"], ["prep-b", "prep-c"]),
    line("meas-c", "measure", ["c"], ["prep-c"]),
    line("all", "combine", ["ab", "bc", "c"], ["meas-ab", "meas-bc", "meas-c"]),
]


def test_read_graph_numbers_jobs_per_task_and_turns_parent_ids_into_task_index_refs() -> None:
    # Given the quanta example graph
    # When it is read
    jobs = list(read_graph(QUANTA, GRAPH_TASKS))
    # Then each job gets the next index of its task, its inputs, and its parents as refs
    assert jobs == [
        GraphJob("prepare", 0, ["a"], []),
        GraphJob("prepare", 1, ["b"], []),
        GraphJob("prepare", 2, ["c"], []),
        GraphJob("measure", 0, ["a", "b"], [("prepare", 0), ("prepare", 1)]),
        GraphJob("measure", 1, ["b", "c"], [("prepare", 1), ("prepare", 2)]),
        GraphJob("measure", 2, ["c"], [("prepare", 2)]),
        GraphJob("combine", 0, ["ab", "bc", "c"], [("measure", 0), ("measure", 1), ("measure", 2)]),
    ]


def test_read_graph_takes_bytes_and_skips_blank_lines() -> None:
    lines: list[str | bytes] = [b"\n", QUANTA[0].encode() + b"\n", b"   \n", QUANTA[1].encode(), ""]
    assert [(j.task, j.index) for j in read_graph(lines, GRAPH_TASKS)] == [
        ("prepare", 0),
        ("prepare", 1),
    ]


def test_an_empty_graph_has_no_jobs() -> None:
    assert list(read_graph([], GRAPH_TASKS)) == []


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("{not json", "graph line 3: "),
        ('["a list"]', "graph line 3: "),
        (json.dumps({"task": "prepare"}), "graph line 3: "),  # no id
        (json.dumps({"id": "", "task": "prepare"}), "graph line 3: "),
        (json.dumps({"id": "x", "task": "prepare", "colour": "red"}), "graph line 3: "),
        (
            line("x", "ghost"),
            "graph line 3: job 'x' names task 'ghost', which is not a graph task of the workflow",
        ),
        (
            line("x", "plain"),
            "graph line 3: job 'x' names task 'plain', which is not a graph task of the workflow",
        ),
        (line("prep-a", "measure"), "graph line 3: duplicate job id 'prep-a'"),
        (
            line("x", "measure", parents=["prep-a", "ghost"]),
            "graph line 3: job 'x' names parent 'ghost', which is not listed before it",
        ),
        (
            line("x", "measure", parents=["x"]),
            "graph line 3: job 'x' names parent 'x', which is not listed before it",
        ),
    ],
    ids=[
        "bad json",
        "not an object",
        "no id",
        "empty id",
        "unknown field",
        "unknown task",
        "not a graph task",
        "duplicate id",
        "unknown parent",
        "own parent",
    ],
)
def test_a_bad_graph_line_is_named_by_its_number(bad: str, says: str) -> None:
    # Given two good lines, then a bad third line
    lines = [QUANTA[0], QUANTA[1], bad, QUANTA[2]]
    # When the graph is read, Then the error gives the line number and what is wrong
    with pytest.raises(InvalidInput) as caught:
        list(read_graph(lines, GRAPH_TASKS))
    assert caught.value.message.startswith(says), caught.value.message
    assert caught.value.context["line"] == 3


def test_line_numbers_count_blank_lines() -> None:
    lines = [QUANTA[0], "", "  ", "{oops"]
    with pytest.raises(InvalidInput) as caught:
        list(read_graph(lines, GRAPH_TASKS))
    assert caught.value.context["line"] == 4


def test_a_parent_listed_after_its_child_is_refused_on_the_childs_line() -> None:
    # Given a child on line 1 whose parent comes on line 2
    lines = [line("meas", "measure", parents=["prep"]), line("prep", "prepare")]
    with pytest.raises(InvalidInput) as caught:
        list(read_graph(lines, GRAPH_TASKS))
    assert caught.value.context == {"line": 1, "job": "meas", "parent": "prep"}
    assert "list parents before children" in caught.value.message


def test_a_cycle_in_the_graph_is_a_parent_not_listed_before_its_child() -> None:
    lines = [line("a", "prepare", parents=["b"]), line("b", "prepare", parents=["a"])]
    with pytest.raises(InvalidInput, match="graph line 1: job 'a' names parent 'b'"):
        list(read_graph(lines, GRAPH_TASKS))


def test_a_job_has_at_most_max_parents_in_the_graph() -> None:
    parents = [f"p{i}" for i in range(MAX_PARENTS_PER_JOB + 1)]
    with pytest.raises(InvalidInput, match="graph line 1: "):
        list(read_graph([line("x", "measure", parents=parents)], GRAPH_TASKS))


def test_a_graph_line_that_is_not_utf8_is_named_by_its_number() -> None:
    lines = [QUANTA[0].encode(), b'{"id": "\xff", "task": "prepare"}']
    with pytest.raises(InvalidInput) as caught:
        list(read_graph(lines, GRAPH_TASKS))
    assert caught.value.context["line"] == 2


def test_read_graph_streams_jobs_before_a_later_bad_line() -> None:
    jobs = read_graph([QUANTA[0], "{oops"], GRAPH_TASKS)
    assert next(jobs) == GraphJob("prepare", 0, ["a"], [])
    with pytest.raises(InvalidInput):
        next(jobs)


@st.composite
def ordered_graphs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A random job graph in topological order: each job's parents are earlier jobs."""
    n = draw(st.integers(0, 30))
    nodes: list[dict[str, Any]] = []
    for i in range(n):
        parents = draw(st.lists(st.integers(0, i - 1), unique=True, max_size=4)) if i else []
        nodes.append(
            {
                "id": f"job-{i}",
                "task": draw(st.sampled_from(["prepare", "measure", "combine"])),
                "inputs": [f"in{i}"],
                "parents": [f"job-{p}" for p in parents],
            }
        )
    return nodes


@settings(max_examples=60, deadline=None)
@given(ordered_graphs())
def test_any_topologically_ordered_graph_reads_as_refs_to_earlier_jobs(
    nodes: list[dict[str, Any]],
) -> None:
    # Given a graph with parents before children, When it is read
    jobs = list(read_graph([json.dumps(n) for n in nodes], GRAPH_TASKS))
    # Then there is one job per line, in order, numbered 0, 1, ... within its task
    assert len(jobs) == len(nodes)
    seen: dict[str, int] = {}
    ref_of: dict[str, tuple[str, int]] = {}
    for node, job in zip(nodes, jobs, strict=True):
        assert job.task == node["task"]
        assert job.index == seen.get(job.task, 0)
        assert job.inputs == node["inputs"]
        seen[job.task] = job.index + 1
        # And each parent is the (task, index) of the earlier job with that id
        assert job.parents == [ref_of[p] for p in node["parents"]]
        ref_of[node["id"]] = (job.task, job.index)


# --- release: what a waiting job becomes ----------------------------------------------------

F, X, C, CL, R = (
    JobStatus.FINISHED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.CLOSED,
    JobStatus.RUNNING,
)


@pytest.mark.parametrize(
    ("parents", "state", "strict", "lenient"),
    [
        ({}, ParentsState(False), JobStatus.ACTIVATED, JobStatus.ACTIVATED),
        ({"a": F, "b": F}, ParentsState(False), JobStatus.ACTIVATED, JobStatus.ACTIVATED),
        ({"a": None}, ParentsState(True), None, None),
        ({"a": F, "b": R}, ParentsState(True), None, None),
        ({"a": JobStatus.DEFINED}, ParentsState(True), None, None),
        ({"a": F, "b": X}, ParentsState(False, ("b",)), JobStatus.CANCELLED, JobStatus.ACTIVATED),
        ({"a": C}, ParentsState(False, ("a",)), JobStatus.CANCELLED, JobStatus.ACTIVATED),
        ({"a": CL}, ParentsState(False, ("a",)), JobStatus.CANCELLED, JobStatus.ACTIVATED),
        ({"a": X, "b": None}, ParentsState(True, ("a",)), None, None),  # waits for all parents
    ],
    ids=[
        "no parents",
        "all finished",
        "unknown parent",
        "one running",
        "one defined",
        "one failed",
        "one cancelled",
        "one closed",
        "failed and pending",
    ],
)
def test_a_waiting_job_is_released_once_every_parent_ended(
    parents: dict[str, JobStatus | None],
    state: ParentsState,
    strict: JobStatus | None,
    lenient: JobStatus | None,
) -> None:
    # Given the states of a job's parents
    summary = summarize(parents)
    # Then the summary says whether any is pending and which ended badly
    assert summary == state
    # And the job waits (None), is activated, or is cancelled unless the workflow continues
    assert child_status(summary, continue_on_failure=False) == strict
    assert child_status(summary, continue_on_failure=True) == lenient


@pytest.mark.parametrize("status", list(JobStatus))
def test_each_parent_state_is_pending_ok_or_failed(status: JobStatus) -> None:
    s = summarize({"p": status})
    assert s.pending is (status not in JOB_FINAL)
    assert s.failed is (status in JOB_FINAL and status is not JobStatus.FINISHED)


def test_summarize_keeps_a_few_failed_parents_for_the_diagnosis() -> None:
    # Given five failed parents
    s = summarize({f"p{i}": X for i in range(5)})
    # Then the first three are named, and the job is cancelled with them in the diagnosis
    assert s.failed_parents == ("p0", "p1", "p2")
    assert summarize({f"p{i}": X for i in range(5)}, keep=1).failed_parents == ("p0",)
    assert missing_parent(s) == "missing parent: p0, p1, p2 did not finish"


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=3), st.sampled_from([*JobStatus, None])))
def test_a_job_is_activated_exactly_when_all_parents_finished_or_it_continues(
    parents: dict[str, JobStatus | None],
) -> None:
    s = summarize(parents)
    all_finished = all(p is JobStatus.FINISHED for p in parents.values())
    all_ended = all(p is not None and p in JOB_FINAL for p in parents.values())
    assert (child_status(s, continue_on_failure=False) is JobStatus.ACTIVATED) is all_finished
    assert (child_status(s, continue_on_failure=True) is JobStatus.ACTIVATED) is all_ended
    assert (child_status(s, continue_on_failure=False) is None) is (not all_ended)
