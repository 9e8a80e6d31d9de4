"""Task actions end to end: finish (soft and hard), reassign, priority; real pilots."""

from __future__ import annotations

import time
from collections.abc import Callable

from skypanda.adapters.local.runtime import LocalSystem
from skypanda.domain.models import Queue, Resources
from skypanda.pilot.client import ApiClient
from tests.e2e.conftest import cli, fast_queue, wait_until


def _one_at_a_time(make_system: Callable[..., LocalSystem]) -> tuple[LocalSystem, ApiClient]:
    system = make_system(fast_queue(min_pilots=1, max_pilots=1, jobs_per_acquire=1))
    return system, ApiClient(system.url, system.token)


def _running(api: ApiClient, task_id: str) -> list[dict[str, object]]:
    jobs = api.call("GET", f"/v1/tasks/{task_id}/jobs", params={"status": "running"})
    return list(jobs["jobs"])


def test_a_soft_finish_lets_the_running_job_complete_and_closes_the_rest(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a task of 5 slow jobs run one at a time, the first running
    system, api = _one_at_a_time(make_system)
    spec = {"name": "long", "command": ["sh", "-c", "sleep 1.5"], "n_jobs": 5}
    task = api.call("POST", "/v1/tasks", spec)
    (job,) = wait_until(lambda: _running(api, task["id"]), 30, "a job to run")

    # When the user finishes the task
    out = cli(system, "finish", task["id"])
    assert out.returncode == 0, out.stderr

    # Then the jobs the pilot held (the running one, and one it may have prefetched) complete,
    # the others are closed unrun, and the task is finished
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "finished", 30)
    counts = api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"]
    assert set(counts) == {"finished", "closed"} and counts["closed"] >= 3
    assert counts["finished"] + counts["closed"] == 5
    assert api.call("GET", f"/v1/jobs/{job['id']}")["status"] == "finished"


def test_a_hard_finish_kills_the_running_job_too(make_system: Callable[..., LocalSystem]) -> None:
    system, api = _one_at_a_time(make_system)
    task = api.call("POST", "/v1/tasks", {"name": "long", "command": ["sleep", "30"], "n_jobs": 3})
    (job,) = wait_until(lambda: _running(api, task["id"]), 30, "a job to run")

    out = cli(system, "finish", task["id"], "--hard")
    assert out.returncode == 0, out.stderr

    # The running job is killed by its pilot (1144) within seconds; the rest are closed
    killed = wait_until(
        lambda: (j := api.call("GET", f"/v1/jobs/{job['id']}"))["status"] == "cancelled" and j,
        30,
        "the running job to be killed",
    )
    assert killed["attempts"][-1]["error_code"] == 1144
    counts = api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"]
    assert counts == {"cancelled": 1, "closed": 2}


def test_reassign_moves_queued_jobs_to_another_queue_where_they_run(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a queue with no pilots holding a task's jobs, and a queue `fast` with pilots
    system = make_system(fast_queue(min_pilots=0, max_pilots=0))
    system.store.put_queue(
        Queue(
            name="fast", min_pilots=1, max_pilots=1, heartbeat_interval_s=0.5,
            heartbeat_timeout_s=4.0, idle_timeout_s=3.0, pilot_resources=Resources(memory_mb=4000),
        )
    )  # fmt: skip
    api = ApiClient(system.url, system.token)
    task = api.call("POST", "/v1/tasks", {"name": "stuck", "command": ["true"], "n_jobs": 3})
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "ready", 10)

    # When the user raises its priority and reassigns it to `fast`
    assert cli(system, "priority", task["id"], "5").returncode == 0
    out = cli(system, "reassign", task["id"], "fast")
    assert out.returncode == 0, out.stderr
    assert "3 queued jobs moved to fast" in out.stdout

    # Then the jobs run there, with the new priority
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", 60)
    jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    assert {(j["queue"], j["priority"]) for j in jobs} == {("fast", 5)}


def test_actions_on_an_ended_task_or_to_an_unknown_queue_are_refused(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a task waiting on a queue without pilots
    system = make_system(fast_queue(min_pilots=0, max_pilots=0))
    api = ApiClient(system.url, system.token)
    task = api.call("POST", "/v1/tasks", {"name": "t", "command": ["true"], "n_jobs": 2})
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "ready", 10)
    # Then moving it to an unknown queue is bad input, and nothing moved
    out = cli(system, "reassign", task["id"], "nowhere")
    assert out.returncode == 2 and "unknown queue 'nowhere'" in out.stderr
    # And once finished (nothing ran: all closed), finishing it again is refused
    assert cli(system, "finish", task["id"]).returncode == 0
    assert api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"] == {"closed": 2}
    out = cli(system, "finish", task["id"])
    assert out.returncode == 1 and "it is finished, not ready, running or paused" in out.stderr


def test_pause_stops_dispatch_and_resume_restarts_it(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a task of 6 short jobs run one at a time, its first job running
    system, api = _one_at_a_time(make_system)
    spec = {"name": "steady", "command": ["sh", "-c", "sleep 0.5"], "n_jobs": 6}
    task = api.call("POST", "/v1/tasks", spec)
    wait_until(lambda: _running(api, task["id"]), 30, "a job to run")

    # When the user pauses it
    out = cli(system, "pause", task["id"])
    assert out.returncode == 0 and "paused" in out.stdout, out.stderr

    # Then the jobs the pilot held finish, and no other job starts while it is paused
    def settled() -> dict[str, int] | None:
        counts = api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"]
        live = sum(counts.get(s, 0) for s in ("sent", "starting", "running"))
        return counts if live == 0 else None

    paused_counts = wait_until(settled, 30, "the held jobs to finish")
    time.sleep(2.0)  # several heartbeats and acquire rounds
    assert api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"] == paused_counts
    assert set(paused_counts) == {"finished", "defined"} and paused_counts["defined"] >= 2
    assert api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "paused"

    # When it is resumed, Then the rest run and the task is done
    out = cli(system, "resume", task["id"])
    assert out.returncode == 0, out.stderr
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", 60)
    assert api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"] == {"finished": 6}
