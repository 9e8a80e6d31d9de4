"""What the free-slot and free-core tests share: a second job runs beside a long one on a
second pilot (the scaler launches it), while the long one's gate holds it running."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skypanda.domain.models import Job
from skypanda.domain.states import JobStatus
from skypanda.pilot.client import ApiClient
from tests.e2e.conftest import Gate, wait_until


def only_job(system: Any, task: dict[str, object]) -> Job:
    """The one job of a task of one job."""
    (job,) = system.store.list_jobs(str(task["id"]))
    assert isinstance(job, Job)
    return job


def task_done(api: ApiClient, task: dict[str, object]) -> bool:
    return bool(api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done")


def second_runs_beside_the_long_one(
    system: Any,
    api: ApiClient,
    gate: Gate,
    long: dict[str, object],
    submit_second: Callable[[], dict[str, object]],
) -> Job:
    """With `long` running (held by its gate) on the only pilot of queue `local`, and room then
    made for a second pilot: the job `submit_second` submits runs to its end on another pilot
    while `long` still runs. Returns it."""
    wait_until(lambda: gate.started(), what="the long payload to start")
    running = JobStatus.RUNNING
    first = wait_until(
        lambda: (j := only_job(system, long)).status is running and j, what="running"
    )
    system.store.put_queue(system.store.get_queue("local").model_copy(update={"max_pilots": 2}))

    # When a second job is activated
    second = submit_second()

    # Then it runs to its end, on another pilot, while the long one still runs
    wait_until(lambda: task_done(api, second), 90, "the second job to run beside the long one")
    job = only_job(system, second)
    assert job.pilot_id != first.pilot_id
    assert only_job(system, long).status is JobStatus.RUNNING
    gate.release()
    wait_until(lambda: task_done(api, long), 60, "the long job to end once released")
    return job
