"""Preemption end to end: SIGTERM to a pilot mid-job (a Cloud Run or GKE eviction, a spot VM
reclaimed) requeues its job without counting an attempt; another pilot finishes it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from skypanda.wire.codes import ErrorCode
from tests.e2e.conftest import Gate, cli, fast_queue, wait_until


def test_sigterm_to_a_pilot_requeues_its_job_without_counting_the_attempt(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given two pilots and a job allowed one attempt only, that runs until the test lets it end
    system = make_system(fast_queue(min_pilots=2, max_pilots=2))
    api = ApiClient(system.url, system.token)
    gate = Gate(tmp_path / "gate")
    command = gate.command("echo survived", mark="$SKYPANDA_ATTEMPT")
    task = api.call(
        "POST",
        "/v1/tasks",
        {"name": "evicted", "command": command, "n_jobs": 1, "max_attempts": 1},
    )

    def running() -> list[dict[str, object]]:
        jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"status": "running"})
        return list(jobs["jobs"]) if "1" in gate.started() else []

    (job,) = wait_until(running, what="the job to run")
    pilot = next(p for p in api.call("GET", "/v1/pilots")["pilots"] if p["id"] == job["pilot_id"])

    # When its pilot gets SIGTERM (what Cloud Run and Kubernetes send before killing)
    os.kill(int(pilot["pid"]), signal.SIGTERM)

    # Then the payload is stopped, the attempt ends with the SIGTERM code, not counted
    payload_pid = gate.pid(1)
    wait_until(lambda: not Path(f"/proc/{payload_pid}").exists(), what="the payload to stop")
    # And another pilot finishes the job as attempt 2, although max_attempts is 1
    gate.release()
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", what="done")
    detail = api.call("GET", f"/v1/jobs/{job['id']}")
    first, second = detail["attempts"]
    assert first["error_code"] == ErrorCode.SIGTERM and first["status"] == "failed"
    assert second["status"] == "finished" and second["pilot_id"] != job["pilot_id"]
    assert detail["failures"] == 0
    # And the preempted pilot ended cleanly, having reported its job
    ended = next(p for p in api.call("GET", "/v1/pilots")["pilots"] if p["id"] == pilot["id"])
    assert (ended["status"], ended["reason"]) == ("cancelled", "SIGTERM"), ended
    # And `skypanda jobs` shows the job's latest attempt; the first attempt's code is named by
    # the API's attempts and in `skypanda jobs` while a job carries it
    shown = cli(system, "jobs", task["id"])
    assert shown.returncode == 0, shown.stderr
    assert "finished" in shown.stdout


def test_a_drained_pilot_finishes_its_job_then_exits_and_takes_no_new_one(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given one pilot (the scaler keeps one) running the first of four jobs, each held until
    # the test lets it finish
    system = make_system(fast_queue(min_pilots=1, max_pilots=1, jobs_per_acquire=1))
    api = ApiClient(system.url, system.token)
    gate = Gate(tmp_path / "gate")
    task = api.call(
        "POST", "/v1/tasks", {"name": "slow", "command": gate.command("echo done"), "n_jobs": 4}
    )

    def running() -> list[dict[str, object]]:
        jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"status": "running"})
        return list(jobs["jobs"])

    (job,) = wait_until(running, what="a job to run")
    wait_until(lambda: str(job["index"]) in gate.started(), what="its payload to start")
    pilot_id = str(job["pilot_id"])

    def held() -> set[str]:
        jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
        return {str(j["id"]) for j in jobs if j["pilot_id"] == pilot_id}

    # When an operator drains that pilot (it may hold a prefetched job besides the running one),
    # and only once the pilot heard it (its next heartbeat) may the jobs end
    out = cli(system, "drain", pilot_id)
    assert out.returncode == 0, out.stderr
    pilot_log = system.opts.home / "pilots" / f"{pilot_id}.log"
    wait_until(
        lambda: "the server asked to drain" in pilot_log.read_text(errors="replace"),
        what=f"pilot {pilot_id} to hear the drain (in {pilot_log})",
    )
    before = held()
    gate.release()

    # Then it finishes the jobs it held and ends finished ("drained"), taking no new one
    def ended() -> dict[str, object] | None:
        p = next(p for p in api.call("GET", "/v1/pilots")["pilots"] if p["id"] == pilot_id)
        return p if p["status"] != "running" else None

    pilot = wait_until(ended, what="the drained pilot to end")
    assert (pilot["status"], pilot["reason"]) == ("finished", "drained")
    assert api.call("GET", f"/v1/jobs/{job['id']}")["status"] == "finished"
    # (at most the running job and one it had prefetched: the rest ran on the next pilot)
    assert held() == before and len(before) <= 2
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done",
        what="the rest to run on the next pilot",
    )
