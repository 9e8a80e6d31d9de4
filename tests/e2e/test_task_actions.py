"""Task actions end to end: finish (soft and hard), reassign, priority; real pilots."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skypanda.domain.models import Queue, Resources
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, cli, fast_queue, wait_until


def _one_at_a_time(make_system: Callable[..., LocalSystem]) -> tuple[LocalSystem, ApiClient]:
    system = make_system(fast_queue(min_pilots=1, max_pilots=1, jobs_per_acquire=1))
    return system, ApiClient(system.url, system.token)


def _running(api: ApiClient, task_id: str) -> list[dict[str, object]]:
    jobs = api.call("GET", f"/v1/tasks/{task_id}/jobs", params={"status": "running"})
    return list(jobs["jobs"])


def test_a_soft_finish_lets_the_running_job_complete_and_closes_the_rest(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a task of 5 jobs run one at a time, each held until the test lets it finish, the
    # first running
    system, api = _one_at_a_time(make_system)
    gate = Gate(tmp_path / "gate")
    spec = {"name": "long", "command": gate.command(), "n_jobs": 5}
    task = api.call("POST", "/v1/tasks", spec)
    (job,) = wait_until(lambda: _running(api, task["id"]), what="a job to run")
    wait_until(lambda: str(job["index"]) in gate.started(), what="its payload to start")

    # When the user finishes the task, and only then the running job may end
    out = cli(system, "finish", task["id"])
    assert out.returncode == 0, out.stderr
    gate.release()

    # Then the jobs the pilot held (the running one, and one it may have prefetched) complete,
    # the others are closed unrun, and the task is finished
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "finished",
        what="the task to be finished",
    )
    counts = api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"]
    assert set(counts) == {"finished", "closed"} and counts["closed"] >= 3
    assert counts["finished"] + counts["closed"] == 5
    assert api.call("GET", f"/v1/jobs/{job['id']}")["status"] == "finished"
    # (and no closed job ever ran: payloads started for the finished jobs only)
    assert len(gate.started()) == counts["finished"]


def test_a_hard_finish_kills_the_running_job_too(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a task of 3 jobs run one at a time, whose payloads run until killed, the first running
    system, api = _one_at_a_time(make_system)
    gate = Gate(tmp_path / "gate")  # never released
    task = api.call("POST", "/v1/tasks", {"name": "long", "command": gate.command(), "n_jobs": 3})
    (job,) = wait_until(lambda: _running(api, task["id"]), what="a job to run")
    wait_until(lambda: str(job["index"]) in gate.started(), what="its payload to start")

    out = cli(system, "finish", task["id"], "--hard")
    assert out.returncode == 0, out.stderr

    # The running job is killed by its pilot (1144); the rest are closed
    killed = wait_until(
        lambda: (j := api.call("GET", f"/v1/jobs/{job['id']}"))["status"] == "cancelled" and j,
        what="the running job to be killed",
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
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "ready",
        what="the task to be ready",
    )

    # When the user raises its priority and reassigns it to `fast`
    assert cli(system, "priority", task["id"], "5").returncode == 0
    out = cli(system, "reassign", task["id"], "fast")
    assert out.returncode == 0, out.stderr
    assert "3 queued jobs moved to fast" in out.stdout

    # Then the jobs run there, with the new priority
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done",
        what="the task to be done",
    )
    jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    assert {(j["queue"], j["priority"]) for j in jobs} == {("fast", 5)}


def test_actions_on_an_ended_task_or_to_an_unknown_queue_are_refused(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a task waiting on a queue without pilots
    system = make_system(fast_queue(min_pilots=0, max_pilots=0))
    api = ApiClient(system.url, system.token)
    task = api.call("POST", "/v1/tasks", {"name": "t", "command": ["true"], "n_jobs": 2})
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "ready",
        what="the task to be ready",
    )
    # Then moving it to an unknown queue is bad input, and nothing moved
    out = cli(system, "reassign", task["id"], "nowhere")
    assert out.returncode == 2 and "unknown queue 'nowhere'" in out.stderr
    # And once finished (nothing ran: all closed), finishing it again is refused
    assert cli(system, "finish", task["id"]).returncode == 0
    assert api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"] == {"closed": 2}
    out = cli(system, "finish", task["id"])
    assert out.returncode == 1 and "it has ended finished; nothing is left to do" in out.stderr


def test_pause_stops_dispatch_and_resume_restarts_it(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a task of 6 jobs run one at a time, each held until the test lets it finish, its
    # first job running
    system, api = _one_at_a_time(make_system)
    gate = Gate(tmp_path / "gate")
    spec = {"name": "steady", "command": gate.command(), "n_jobs": 6}
    task = api.call("POST", "/v1/tasks", spec)
    (job,) = wait_until(lambda: _running(api, task["id"]), what="a job to run")
    wait_until(lambda: str(job["index"]) in gate.started(), what="its payload to start")

    # When the user pauses it, and only then the jobs may end
    out = cli(system, "pause", task["id"])
    assert out.returncode == 0 and "paused" in out.stdout, out.stderr
    gate.release()

    # Then the jobs the pilot held finish, and no other job starts while it is paused
    def settled() -> dict[str, int] | None:
        counts = api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"]
        live = sum(counts.get(s, 0) for s in ("sent", "starting", "running"))
        return counts if live == 0 else None

    paused_counts = wait_until(settled, what="the held jobs to finish")
    assert set(paused_counts) == {"finished", "defined"} and paused_counts["defined"] >= 2
    ran = gate.started()
    assert len(ran) == paused_counts["finished"]
    # (shown by a later task: the one pilot runs it to the end, although the paused task's
    # older jobs of the same priority would be dispatched first if they were queued)
    later = api.call("POST", "/v1/tasks", {"name": "later", "command": ["true"], "n_jobs": 2})
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{later['id']}")["status"] == "done",
        what="a later task to run while the first is paused",
    )
    assert api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"] == paused_counts
    assert gate.started() == ran
    assert api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "paused"

    # When it is resumed, Then the rest run and the task is done
    out = cli(system, "resume", task["id"])
    assert out.returncode == 0, out.stderr
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done",
        what="the resumed task to be done",
    )
    assert api.call("GET", f"/v1/tasks/{task['id']}")["job_counts"] == {"finished": 6}
    assert len(gate.started()) == 6
