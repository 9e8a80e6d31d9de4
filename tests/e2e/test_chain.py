"""Chaining end to end on the embedded default: a workflow or task submitted with `start_after`
(the file field, or `skypanda submit --after`) waits, held, for another one submitted
separately; it starts when that one ends `done`, and never starts when it ends `failed`. Real
pilots run the payloads; the end events reach the chain handler through the outbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, cli, wait_until

WORKFLOW = """
name: chained
tasks:
  - {name: first, command: [sh, -c, 'echo first {index}'], n_jobs: 2}
  - {name: second, command: [sh, -c, 'echo second'], n_jobs: 1, after: [first]}
"""


def _trigger(api: ApiClient, gate: Gate, name: str, then: str) -> str:
    """A task whose one job waits at `gate`, then runs `then` (no retry): its end is ours to
    choose, and it cannot end before the chained submissions are stored."""
    spec = {"name": name, "command": gate.command(then, mark=name), "n_jobs": 1,
            "max_attempts": 1}  # fmt: skip
    return str(api.call("POST", "/v1/tasks", spec)["id"])


def _submit(system: LocalSystem, file: Path, *args: str) -> str:
    out = cli(system, "submit", str(file), *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _ended(api: ApiClient, path: str) -> Any:
    view = api.call("GET", path)
    return view if view["status"] in ("done", "failed", "skipped", "aborted") else None


def test_a_chained_workflow_starts_after_its_trigger_ends_done_not_after_failed(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    # Given two trigger tasks held at a gate: one will succeed, one will fail
    gate = Gate(tmp_path / "gate")
    good = _trigger(api, gate, "good", "exit 0")
    bad = _trigger(api, gate, "bad", "exit 1")
    # and the same workflow chained on each: by the command's --after, and by the file's field
    wf_file = tmp_path / "chained.yaml"
    wf_file.write_text(WORKFLOW)
    on_good = _submit(system, wf_file, "--after", good)
    (tmp_path / "chained-bad.yaml").write_text(WORKFLOW + f"start_after: {{task: {bad}}}\n")
    on_bad = _submit(system, tmp_path / "chained-bad.yaml")

    # Then both are held: registered, not started, and `status` says what each waits for
    held = api.call("GET", f"/v1/workflows/{on_good}")
    assert held["status"] == "registered"
    assert held["reason"] == f"waiting for task {good} to end done"
    shown = cli(system, "status", on_bad)
    assert shown.returncode == 0, shown.stderr
    assert f"waiting for task {bad} to end done" in shown.stdout

    # When the triggers run and end
    wait_until(lambda: gate.started() == {"good", "bad"}, what="both triggers running")
    gate.release()

    # Then the workflow chained on the task that ended done runs to done
    done = wait_until(lambda: _ended(api, f"/v1/workflows/{on_good}"), what="chained workflow")
    assert done["status"] == "done", done
    assert {t["name"]: t["status"] for t in done["tasks"]} == {"first": "done", "second": "done"}
    # and the one chained on the failed task never started: skipped, naming its trigger
    skipped = wait_until(lambda: _ended(api, f"/v1/workflows/{on_bad}"), what="skipped workflow")
    assert skipped["status"] == "skipped", skipped
    assert skipped["reason"] == (f"not started: task {bad} ended failed (start_after wanted done)")
    assert {t["status"] for t in skipped["tasks"]} == {"skipped"}
    assert all(not t["job_counts"] for t in skipped["tasks"])


def test_a_task_chained_on_a_task_runs_on_done_and_is_skipped_on_failed(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    # Given two gated triggers, a task chained on each (and one that wants the failure)
    gate = Gate(tmp_path / "gate")
    good = _trigger(api, gate, "good", "exit 0")
    bad = _trigger(api, gate, "bad", "exit 1")
    task_file = tmp_path / "next.yaml"
    task_file.write_text("name: next\ncommand: [sh, -c, 'echo next {index}']\nn_jobs: 2\n")
    on_good = _submit(system, task_file, "--after", good)
    on_bad = _submit(system, task_file, "--after", bad)
    cleanup = _submit(system, task_file, "--after", bad, "--after-status", "failed")
    assert api.call("GET", f"/v1/tasks/{on_good}")["status"] == "pending"

    # When the triggers end
    wait_until(lambda: gate.started() == {"good", "bad"}, what="both triggers running")
    gate.release()

    # Then the one chained on done ran, so did the one wanting failed, the other was skipped
    ran = wait_until(lambda: _ended(api, f"/v1/tasks/{on_good}"), what="chained task")
    assert (ran["status"], ran["job_counts"]) == ("done", {"finished": 2})
    assert wait_until(lambda: _ended(api, f"/v1/tasks/{cleanup}"))["status"] == "done"
    skipped = wait_until(lambda: _ended(api, f"/v1/tasks/{on_bad}"), what="skipped task")
    assert skipped["status"] == "skipped"
    assert f"task {bad} ended failed" in skipped["reason"]
    assert skipped["job_counts"] == {}
    assert json.loads(cli(system, "status", on_bad, "--json").stdout)["status"] == "skipped"


def test_a_task_chained_on_a_task_on_the_emulators(cloud: Any, tmp_path: Path) -> None:
    # Given, on the gcp backend (Firestore, Pub/Sub emulators), a trigger held at a gate and
    # two tasks chained on it: one wanting done, one wanting failed
    api = ApiClient(cloud.url, cloud.token)
    gate = Gate(tmp_path / "gate")
    trigger = _trigger(api, gate, "trigger", "exit 0")
    task_file = tmp_path / "next.yaml"
    task_file.write_text("name: next\ncommand: [sh, -c, 'echo next']\nn_jobs: 1\n")
    on_done = _submit(cloud, task_file, "--after", trigger)
    on_failed = _submit(cloud, task_file, "--after", trigger, "--after-status", "failed")
    assert api.call("GET", f"/v1/tasks/{on_done}")["status"] == "pending"

    # When the trigger ends done
    wait_until(lambda: gate.started() == {"trigger"}, 90, "the trigger running")
    gate.release()

    # Then the first runs to done, the second is skipped naming the trigger
    ran = wait_until(lambda: _ended(api, f"/v1/tasks/{on_done}"), 120, "the chained task")
    assert ran["status"] == "done", ran
    skipped = wait_until(lambda: _ended(api, f"/v1/tasks/{on_failed}"), 60, "the skipped one")
    assert skipped["status"] == "skipped"
    assert f"task {trigger} ended done" in skipped["reason"]
