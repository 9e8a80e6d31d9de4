"""`skypanda kill-job`: a job is killed, not its task, through the real command against a
running system with real pilots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, cli, wait_until


def jobs_of(system: LocalSystem, task_id: str) -> list[dict[str, Any]]:
    shown = cli(system, "jobs", task_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return list(json.loads(shown.stdout))


def status_of(system: LocalSystem, job_id: str, task_id: str) -> str:
    return str(next(j["status"] for j in jobs_of(system, task_id) if j["id"] == job_id))


def test_kill_job_kills_one_running_job_and_its_task_goes_on(
    system: LocalSystem, tmp_path: Path
) -> None:
    # Given a task of two jobs whose payloads run until let go
    gate = Gate(tmp_path / "gate")
    task_file = gate.task_file(tmp_path / "task.yaml", n_jobs=2, max_attempts=3)
    submitted = cli(system, "submit", str(task_file))
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    wait_until(lambda: gate.started() == {"0", "1"}, 90, "both payloads to start")
    first, second = (j["id"] for j in sorted(jobs_of(system, task_id), key=lambda j: j["index"]))

    # When one of them is killed
    killed = cli(system, "kill-job", first)

    # Then its pilot is told to kill it, and it ends cancelled in its first attempt (never
    # retried), while the other runs on and the task is not over
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.startswith(f"job {first} is ") and "its pilot is told to kill it" in (
        killed.stdout
    )
    wait_until(lambda: status_of(system, first, task_id) == "cancelled", 90, "the job killed")
    jobs = {j["id"]: j for j in jobs_of(system, task_id)}
    assert jobs[first]["attempt"] == 1
    assert jobs[second]["status"] in ("starting", "running")
    task = json.loads(cli(system, "status", task_id, "--json").stdout)
    assert task["status"] == "running"

    # And killing it again says it has ended; an unknown job is named, and the exit is 1
    again = cli(system, "kill-job", first, "t0-nosuchjob")
    assert again.returncode == 1
    assert again.stdout == f"job {first} has ended cancelled: nothing to kill\n"
    assert "no job with id 't0-nosuchjob'" in again.stderr

    # When the other is killed too (--json), Then the task ends failed: no job finished
    body = cli(system, "kill-job", second, "--json")
    assert body.returncode == 0, body.stderr
    assert json.loads(body.stdout)["results"][0]["result"] == "kill_requested"
    wait_until(
        lambda: json.loads(cli(system, "status", task_id, "--json").stdout)["status"] == "failed",
        90, "the task to end",
    )  # fmt: skip
    assert {j["status"] for j in jobs_of(system, task_id)} == {"cancelled"}
