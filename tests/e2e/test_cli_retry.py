"""`skypanda retry` of killed tasks and workflows, and actions on ended tasks, through the
installed command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, wait_until
from tests.e2e.test_cli_up import SKYPANDA


def sky(system: LocalSystem, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `skypanda` command, talking to `system`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPANDA_")}
    env.update(
        SKYPANDA_SERVER=system.url, SKYPANDA_TOKEN=system.token,
        SKYPANDA_HOME=str(system.opts.home),
    )  # fmt: skip
    return subprocess.run(
        [SKYPANDA, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def status_of(system: LocalSystem, ident: str) -> str:
    shown = sky(system, "status", ident, "--json")
    assert shown.returncode == 0, shown.stderr
    return str(json.loads(shown.stdout)["status"])


def killed_jobs_stopped(system: LocalSystem, task_id: str) -> bool:
    jobs = json.loads(sky(system, "jobs", task_id, "--json").stdout)
    return all(j["status"] in ("failed", "cancelled", "finished") for j in jobs)


def retried(system: LocalSystem, ident: str) -> dict[str, object] | None:
    """Retry until the killed jobs have stopped (refused, plainly, while they are killed)."""
    result = sky(system, "retry", ident, "--json")
    if result.returncode != 0:
        assert "still being killed" in result.stderr, result.stderr
        return None
    return dict(json.loads(result.stdout))


def test_a_killed_task_is_retried_and_actions_on_it_say_what_can_be_done(
    system: LocalSystem, tmp_path: Path
) -> None:
    # Given a task of two jobs held running
    gate = Gate(tmp_path / "gate")
    task_file = gate.task_file(tmp_path / "task.yaml", n_jobs=2, max_attempts=3)
    task_id = sky(system, "submit", str(task_file)).stdout.strip()
    wait_until(lambda: gate.started() == {"0", "1"}, 90, "both payloads to start")
    # When it is killed
    killed = sky(system, "kill", task_id)
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == f"task {task_id}: aborted"
    # Then killing it again, pausing or finishing it, says its state and what can be done
    for action in ("kill", "pause", "finish", "resume"):
        again = sky(system, action, task_id)
        assert again.returncode == 1, (action, again.stderr)
        assert "Traceback" not in again.stderr and "IllegalTransition" not in again.stderr
        assert "it has ended aborted; retry it to rerun its failed and cancelled jobs" in (
            again.stderr
        ), (action, again.stderr)
    # When its killed jobs have stopped, and the task is retried
    wait_until(lambda: killed_jobs_stopped(system, task_id), 90, "the jobs to be killed")
    gate.release()
    body = wait_until(lambda: retried(system, task_id), 90, "the retry to be accepted")
    # Then both cancelled jobs run again, as a new attempt, and the task ends done
    assert body["jobs_reset"] == 2
    wait_until(lambda: status_of(system, task_id) == "done", 90, "the task to end done")
    jobs = json.loads(sky(system, "jobs", task_id, "--json").stdout)
    assert [(j["status"], j["attempt"]) for j in jobs] == [("finished", 2), ("finished", 2)]
    # And a done task refuses a retry, saying so
    refused = sky(system, "retry", task_id)
    assert refused.returncode == 1
    assert f"cannot retry task {task_id}: it has ended done; nothing is left to do" in (
        refused.stderr
    )


def test_a_killed_workflow_is_retried_and_runs_to_the_end(
    system: LocalSystem, tmp_path: Path
) -> None:
    # Given a workflow `first` -> `second` whose first task is held running
    gate = Gate(tmp_path / "gate")
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: pair\ntasks:\n"
        f"  - name: first\n    n_jobs: 1\n    command: {json.dumps(gate.command())}\n"
        "  - name: second\n    n_jobs: 1\n    after: [first]\n    command: [echo, two]\n"
    )
    workflow_id = sky(system, "submit", str(flow)).stdout.strip()
    wait_until(lambda: gate.started() == {"0"}, 90, "the first payload to start")
    # When it is killed, Then it is aborted and a second kill says so plainly
    assert sky(system, "kill", workflow_id).returncode == 0
    assert status_of(system, workflow_id) == "aborted"
    again = sky(system, "kill", workflow_id)
    assert again.returncode == 1
    assert f"cannot kill workflow {workflow_id}: it has ended aborted; retry it" in again.stderr
    # When it is retried (once its killed job stopped)
    first = json.loads(sky(system, "status", workflow_id, "--json").stdout)["tasks"][0]["id"]
    wait_until(lambda: killed_jobs_stopped(system, first), 90, "the job to be killed")
    gate.release()
    wait_until(lambda: retried(system, workflow_id), 90, "the retry to be accepted")
    # Then the killed job runs again, the task that never started runs, and it ends done
    wait_until(lambda: status_of(system, workflow_id) == "done", 90, "the workflow to end done")
    view = json.loads(sky(system, "status", workflow_id, "--json").stdout)
    assert {t["name"]: t["status"] for t in view["tasks"]} == {"first": "done", "second": "done"}
