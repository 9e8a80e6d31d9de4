"""What the monitor's pages show (api.monitor.shape): the actions a viewer is offered, progress
bars, chart series, the task graph, and how filters are read."""

from __future__ import annotations

import pytest

from skypanda.api.monitor import shape
from skypanda.api.monitor.charts import settled
from skypanda.api.params import parse_moment, parse_states
from skypanda.domain.errors import InvalidInput
from skypanda.domain.records import Task
from skypanda.domain.states import TaskStatus
from skypanda.domain.taskspec import TaskSpec
from skypanda.domain.workflow import WorkflowSpec, compile_workflow
from skypanda.ports.views import Bucket


def _task(status: TaskStatus, owner: str = "alice", **kw: object) -> Task:
    spec = TaskSpec(name="t", command=["true"], n_jobs=2)
    return Task(
        id="t1", spec=spec, owner=owner, status=status, n_jobs=2, created_at=0, updated_at=0,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_owner_is_offered_what_the_state_allows_and_others_nothing() -> None:
    running = _task(TaskStatus.RUNNING)
    assert shape.task_actions(running, "alice", admin=False) == shape.TaskActions(
        kill=True, pause=True, priority=True
    )
    # Someone else sees no action; an admin sees the owner's
    assert not shape.task_actions(running, "bob", admin=False).any
    assert shape.task_actions(running, "root", admin=True).kill
    # A failed task is retried (not killed or paused); a paused one resumed
    failed = shape.task_actions(_task(TaskStatus.FAILED), "alice", admin=False)
    assert failed == shape.TaskActions(retry=True)
    paused = shape.task_actions(_task(TaskStatus.PAUSED), "alice", admin=False)
    assert paused.resume and paused.kill and not paused.pause
    # A done task offers nothing; a failed task of a workflow is retried with its workflow
    assert not shape.task_actions(_task(TaskStatus.DONE), "alice", admin=False).any
    in_workflow = _task(TaskStatus.FAILED, workflow_id="w1")
    assert not shape.task_actions(in_workflow, "alice", admin=False).retry


def test_a_progress_bar_groups_job_states_and_leaves_empty_groups_out() -> None:
    bar = shape.progress({"finished": 6, "failed": 1, "running": 1, "sent": 1, "activated": 1})
    assert [(s["group"], s["count"]) for s in bar] == [
        ("finished", 6), ("failed", 1), ("live", 2), ("queued", 1),
    ]  # fmt: skip
    assert sum(s["pct"] for s in bar) == pytest.approx(100)
    assert shape.progress({}) == []
    assert shape.ordered_counts({"failed": 1, "defined": 2, "running": 0}) == [
        ("defined", 2), ("failed", 1),
    ]  # fmt: skip


def test_a_timeline_keeps_one_point_per_moment_and_only_states_that_occur() -> None:
    points = [
        {"t": 10, "activated": 2, "running": 0, "finished": 0},
        {"t": 10, "activated": 1, "running": 1, "finished": 0},  # the same second: the last
        {"t": 11, "activated": 0, "running": 0, "finished": 2},
    ]
    chart = shape.timeline_chart(points)
    assert chart["x"] == [10, 11]
    assert [s["label"] for s in chart["series"]] == ["activated", "running", "finished"]
    assert chart["series"][1]["values"] == [1, 0]


def test_throughput_series_line_up_on_every_minute_with_zeros_between() -> None:
    buckets = [
        Bucket(start=600.0, count=3, label="finished"),
        Bucket(start=720.0, count=1, label="failed"),
        Bucket(start=720.0, count=2, label="finished"),
    ]
    chart = shape.series_by_label(buckets, ["finished", "failed"])
    assert chart == {
        "x": [600.0, 720.0],
        "series": [
            {"label": "finished", "values": [3, 2]},
            {"label": "failed", "values": [0, 1]},
        ],
    }
    filled = shape.minutes_filled(chart, since=590.0, until=750.0)
    assert filled["x"] == [540, 600, 660, 720]
    assert filled["series"][0]["values"] == [0, 3, 0, 2]


def test_the_task_graph_shows_each_tasks_latest_iteration_and_the_loops() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "wf",
            "tasks": [
                {"name": "fit", "command": ["true"], "n_jobs": 2},
                {"name": "check", "command": ["true"], "n_jobs": 1, "after": ["fit"]},
                {"name": "publish", "command": ["true"], "n_jobs": 1,
                 "when": {"task": "check", "flag": "ok", "equals": "yes"}},
            ],
            "loops": [{"name": "refine", "tasks": ["fit", "check"],
                       "until": {"task": "check", "flag": "ok"}, "max_iterations": 5}],
        }
    )  # fmt: skip
    cw = compile_workflow(spec)

    def made(name: str, iteration: int, status: TaskStatus) -> Task:
        sub = next(t for t in spec.tasks if t.name == name)
        task_spec = TaskSpec(name=name, command=list(sub.command), n_jobs=1)
        return Task(
            id=f"{name}{iteration}", spec=task_spec, status=status, created_at=0, updated_at=0,
            workflow_id="w1", iteration=iteration,
        )  # fmt: skip

    tasks = [
        made("fit", 1, TaskStatus.DONE),
        made("fit", 2, TaskStatus.RUNNING),
        made("check", 1, TaskStatus.DONE),
    ]
    graph = shape.dag(cw, tasks, {"fit2": {"finished": 1, "running": 1}})
    nodes = {n["name"]: n for n in graph["nodes"]}
    assert nodes["fit"]["id"] == "fit2" and nodes["fit"]["iteration"] == 2
    assert nodes["fit"]["status"] == "running" and nodes["fit"]["loop"] == "refine"
    assert (nodes["fit"]["jobs"], nodes["fit"]["done"]) == (2, 1)
    assert nodes["publish"]["id"] is None and nodes["publish"]["status"] == "not made"
    assert {(e["from"], e["to"]) for e in graph["edges"]} == {
        ("fit", "check"), ("check", "publish"),
    }  # fmt: skip
    assert graph["edges"][-1]["label"].startswith("when check")
    assert graph["loops"][0]["label"].startswith("loop refine until check")


def test_filters_are_read_or_refused_naming_the_field() -> None:
    assert parse_moment("", "since") is None
    assert parse_moment("2026-12-03T16:20", "since") == 1796314800.0
    assert parse_moment("2026-12-03", "since") == 1796256000.0
    assert parse_moment("2026-12-03T17:20+01:00", "since") == 1796314800.0
    assert parse_moment("1796314800", "since") == 1796314800.0
    with pytest.raises(InvalidInput, match="until: 'yesterday' is not a moment"):
        parse_moment("yesterday", "until")
    for far in ("1e300", "nan", "-5"):
        with pytest.raises(InvalidInput, match="is not a moment"):
            parse_moment(far, "until")
    assert parse_states(["failed", "", "done,running"], TaskStatus) == {
        TaskStatus.FAILED, TaskStatus.DONE, TaskStatus.RUNNING,
    }  # fmt: skip
    with pytest.raises(InvalidInput, match=r"status: unknown state 'broken' \(one of pending"):
        parse_states(["broken"], TaskStatus)
    assert shape.to_local_input(1796314800.0) == "2026-12-03T16:20"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250 ms"), (4.2, "4.2 s"), (42, "42 s"), (185, "3 m 05 s"), (7800, "2 h 10 m"),
     (3 * 86400 + 4 * 3600, "3 d 4 h"), (None, ""), (-1, "")],
)  # fmt: skip
def test_durations_read_as_people_say_them(seconds: float | None, text: str) -> None:
    assert shape.span(seconds) == text


def test_sizes_and_moments() -> None:
    assert shape.size(512) == "512 B"
    assert shape.size(65536) == "64.0 KB"
    assert shape.size(3 * 1024**3) == "3.0 GB"
    assert shape.when(0) == "1970-01-01 00:00:00"
    assert shape.when(None) == ""


def test_only_a_settled_tasks_aggregates_are_kept() -> None:
    # Ended with every job final: nothing changes until a retry moves the task
    assert settled(_task(TaskStatus.DONE), {"finished": 2})
    assert settled(_task(TaskStatus.FAILED), {"finished": 1, "failed": 1, "running": 0})
    # Killed, its running jobs not stopped yet: its counts still move
    assert not settled(_task(TaskStatus.ABORTED), {"cancelled": 1, "running": 1})
    assert not settled(_task(TaskStatus.RUNNING), {"finished": 2})
