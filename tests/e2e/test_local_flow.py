"""End to end on the embedded backend: real HTTP, real pilots, real payload subprocesses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from skypanda.domain.states import JOB_LIVE, JobStatus, TaskStatus
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from skypanda.wire.codes import ErrorCode
from tests.e2e.conftest import REPO, Gate, cli, fast_queue, wait_until, write_task


def test_sample_runs_to_done_and_logs_are_readable(system: LocalSystem) -> None:
    # Given the sample task file
    sample = REPO / "workflows" / "hello.yaml"
    # When it is submitted and waited for through the CLI
    done = cli(system, "submit", str(sample), "--wait", "--json")
    # Then every job finished and the outcome is the documented JSON object
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "done"
    assert result["jobs"] == {"finished": 24}
    assert set(result) >= {"id", "status", "jobs", "seconds"}
    # And each job's log is readable through the CLI
    listing = json.loads(cli(system, "jobs", result["id"], "--json").stdout)
    third = next(j for j in listing if j["index"] == 2)
    log = cli(system, "logs", third["id"])
    assert log.returncode == 0, log.stderr
    assert "job 2 on" in log.stdout and "hello, earth!" in log.stdout
    assert "letters: 5" in log.stdout


def test_run_command_prints_outcome_and_exits_zero(tmp_path: Path) -> None:
    # Given a fresh SKYPANDA_HOME and a small task
    task = write_task(
        tmp_path / "t.yaml", "name: three\ncommand: [echo, 'job {index}']\nn_jobs: 3\n"
    )
    # When `skypanda run --json` runs it on a private system
    out = cli(None, "run", str(task), "--json", home=tmp_path / "home")
    # Then it exits 0 with the outcome
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "done" and result["jobs"] == {"finished": 3}


def test_failing_job_is_retried_then_task_fails_and_run_exits_1(tmp_path: Path) -> None:
    # Given a task whose jobs always exit 3, with two attempts each
    task = write_task(
        tmp_path / "fail.yaml",
        "name: failing\ncommand: [sh, -c, 'echo trying; exit 3']\nn_jobs: 2\nmax_attempts: 2\n",
    )
    home = tmp_path / "home"
    # When it is run
    out = cli(None, "run", str(task), "--json", "--home", str(home), home=home)
    # Then the task failed, `run` exits 1, and each job failed after exactly 2 attempts
    assert out.returncode == 1, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "failed" and result["jobs"] == {"failed": 2}


def test_failed_attempts_are_kept_with_exit_and_error_codes(
    system: LocalSystem, api: ApiClient
) -> None:
    # Given a task that fails on its first attempt and succeeds on its second
    spec = {"name": "flaky", "command": ["sh", "-c", 'test "$SKYPANDA_ATTEMPT" -ge 2 || exit 7'],
            "n_jobs": 1, "max_attempts": 3}  # fmt: skip
    task = api.call("POST", "/v1/tasks", spec)
    # When it runs
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", what="done")
    # Then the job finished on attempt 2 and attempt 1 is kept with its exit and error codes
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    detail = api.call("GET", f"/v1/jobs/{job['id']}")
    assert detail["attempt"] == 2 and detail["status"] == "finished"
    first, second = detail["attempts"]
    assert first["status"] == "failed" and first["exit_code"] == 7
    assert first["error_code"] == ErrorCode.PAYLOAD_FAILED
    assert second["status"] == "finished" and second["exit_code"] == 0


def test_kill_stops_running_jobs_within_seconds(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    # Given a task whose jobs run until killed, running on the pilots
    gate = Gate(tmp_path / "gate")  # never released
    spec = {"name": "sleepy", "command": gate.command(), "n_jobs": 6}
    task = api.call("POST", "/v1/tasks", spec)
    tid = task["id"]
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{tid}")["job_counts"].get("running", 0) >= 2,
        what="running jobs",
    )
    wait_until(lambda: len(gate.started()) >= 2, what="their payloads to start")
    # When the user kills the task
    out = cli(system, "kill", tid)
    assert out.returncode == 0, out.stderr

    # Then within seconds every job has ended cancelled and the payload processes are gone
    def all_cancelled() -> bool:
        counts = api.call("GET", f"/v1/tasks/{tid}")["job_counts"]
        return counts == {"cancelled": 6}

    wait_until(all_cancelled, 30, "all jobs cancelled")
    assert api.call("GET", f"/v1/tasks/{tid}")["status"] == "aborted"
    for mark in gate.started():
        pid = gate.pid(mark)
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 30, f"payload {pid} to exit")


def test_sigkilled_pilot_loses_its_job_to_another_pilot(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given two pilots and one job that runs until the test lets it end, noting its pid per
    # attempt
    system = make_system(fast_queue(min_pilots=2, max_pilots=2))
    api = ApiClient(system.url, system.token)
    gate = Gate(tmp_path / "gate")
    command = gate.command("echo survived", mark="$SKYPANDA_ATTEMPT")
    task = api.call("POST", "/v1/tasks", {"name": "victim", "command": command, "n_jobs": 1})

    def running() -> list[dict[str, object]]:
        jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"status": "running"})
        return list(jobs["jobs"]) if "1" in gate.started() else []

    (job,) = wait_until(running, what="the job to run")
    # When the pilot running it is killed with SIGKILL
    assert system.launcher is not None
    system.launcher.kill(str(job["pilot_id"]))
    # Then its orphaned payload is killed too
    first_pid = gate.pid(1)
    wait_until(lambda: not Path(f"/proc/{first_pid}").exists(), what="the orphaned payload to die")
    # And the job is requeued as a new attempt and finished by another pilot
    gate.release()
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", what="done")
    detail = api.call("GET", f"/v1/jobs/{job['id']}")
    first, second = detail["attempts"]
    assert first["pilot_id"] == job["pilot_id"] and first["error_code"] == ErrorCode.LOST_HEARTBEAT
    assert second["pilot_id"] != job["pilot_id"] and second["status"] == "finished"
    # And no two attempts were ever live together: the first ended before the second started
    assert first["ended_at"] <= second["started_at"]
    assert "survived" in cli(system, "logs", str(job["id"])).stdout


def test_pilots_are_listed_with_their_state(system: LocalSystem, api: ApiClient) -> None:
    # Given a task that made the scaler launch pilots
    task = api.call("POST", "/v1/tasks", {"name": "few", "command": ["true"], "n_jobs": 3})
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", what="done")
    # Then `skypanda pilots --json` lists them on the local queue, and the text view too
    listed = json.loads(cli(system, "pilots", "--queue", "local", "--json").stdout)
    assert listed and {p["queue"] for p in listed} == {"local"}
    text = cli(system, "pilots").stdout
    assert listed[0]["id"] in text and "STATUS" in text


def test_no_job_has_two_live_attempts(system: LocalSystem, api: ApiClient) -> None:
    # Given a batch of jobs run by the pilots
    task = api.call("POST", "/v1/tasks", {"name": "many", "command": ["true"], "n_jobs": 40})
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", what="done")
    # Then every job has exactly one attempt, finished
    for job in system.store.list_jobs(task["id"]):
        attempts = system.store.attempts(job.id)
        assert [a.status for a in attempts] == [JobStatus.FINISHED]
        assert job.status not in JOB_LIVE
    assert system.store.get_task(task["id"]).status is TaskStatus.DONE
