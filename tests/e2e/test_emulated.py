"""End to end on the emulators: Firestore, Pub/Sub push, fake-gcs, functions under
functions-framework, the Eventarc stand-in, real pilots. Same outcomes as the local backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skypanda.pilot.client import ApiClient
from skypanda.runtime.emulated import EmulatedCloud
from tests.e2e.conftest import REPO, Gate, cli, wait_until


def _status(api: ApiClient, task_id: str) -> str:
    return str(api.call("GET", f"/v1/tasks/{task_id}")["status"])


def test_sample_finishes_on_the_emulators(cloud: EmulatedCloud) -> None:
    # Given the sample task, submitted through the gateway as the CLI does
    done = cli(cloud, "submit", str(REPO / "workflows" / "hello.yaml"), "--wait", "--json")
    # Then every job finished and the logs are in Cloud Storage, readable through the API
    assert done.returncode == 0, done.stderr
    assert '"finished": 24' in done.stdout
    api = ApiClient(cloud.url, cloud.token)
    task_id = api.call("GET", "/v1/tasks")["tasks"][0]["id"]
    job = api.call("GET", f"/v1/tasks/{task_id}/jobs", params={"limit": 1})["jobs"][0]
    assert job["log_uri"].startswith("gs://")
    assert "hello," in api.call("GET", f"/v1/jobs/{job['id']}/log")


def test_failing_job_is_retried_then_fails(cloud: EmulatedCloud) -> None:
    api = ApiClient(cloud.url, cloud.token)
    spec = {"name": "failing", "command": ["sh", "-c", "exit 3"], "n_jobs": 2, "max_attempts": 2}
    task = api.call("POST", "/v1/tasks", spec)
    wait_until(lambda: _status(api, task["id"]) == "failed", 90, "the task to fail")
    for job in api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]:
        assert job["status"] == "failed" and job["attempt"] == 2 and job["exit_code"] == 3


def test_killed_task_stops(cloud: EmulatedCloud, tmp_path: Path) -> None:
    # Given a task whose jobs run until killed, one of them running
    api = ApiClient(cloud.url, cloud.token)
    gate = Gate(tmp_path / "gate")  # never released
    task = api.call("POST", "/v1/tasks", {"name": "sleepy", "command": gate.command(), "n_jobs": 4})
    tid = task["id"]
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{tid}")["job_counts"].get("running", 0) >= 1,
        90,
        "a job to run",
    )
    wait_until(lambda: gate.started(), what="its payload to start")
    # When it is killed, Then every job ends cancelled and the running payloads are gone
    assert cli(cloud, "kill", tid).returncode == 0
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{tid}")["job_counts"] == {"cancelled": 4},
        what="every job cancelled",
    )
    assert _status(api, tid) == "aborted"
    for mark in gate.started():
        pid = gate.pid(mark)
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 30, f"payload {pid} to exit")


@pytest.mark.parametrize("name", ["rubin-drp", "refine-loop"])
def test_workflows_finish_on_the_emulators(cloud: EmulatedCloud, name: str) -> None:
    # Given a workflow (job-level keys; or a loop with flags and conditions) on the emulators
    done = cli(cloud, "submit", str(REPO / "workflows" / f"{name}.yaml"), "--wait", "--json")
    # Then it ends done, as on the embedded backend
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "done" and set(result["jobs"]) == {"finished"}
    if name == "refine-loop":
        assert result["tasks"]["give_up"] == "skipped" and result["tasks"]["check#3"] == "done"


def test_failed_workflow_is_retried_on_the_emulators(cloud: EmulatedCloud, tmp_path: Path) -> None:
    # Given a workflow whose job use[1] fails until a file exists
    from tests.e2e.test_workflows import FLAKY

    fix = tmp_path / "fixed"
    wf_file = tmp_path / "flaky.yaml"
    wf_file.write_text(FLAKY % fix)
    failed = cli(cloud, "submit", str(wf_file), "--wait", "--json")
    assert failed.returncode == 1, failed.stderr
    wf_id = json.loads(failed.stdout)["id"]
    api = ApiClient(cloud.url, cloud.token)

    # When the cause is fixed and the workflow retried
    fix.touch()
    assert cli(cloud, "retry", wf_id).returncode == 0
    view = wait_until(
        lambda: (v := api.call("GET", f"/v1/workflows/{wf_id}"))["status"] == "done" and v,
        timeout=120,
        what="the retried workflow",
    )

    # Then only the failed job ran again, and the task that waited for it ran once
    use = next(t for t in view["tasks"] if t["name"] == "use")
    jobs = api.call("GET", f"/v1/tasks/{use['id']}/jobs")["jobs"]
    assert sorted((j["index"], j["attempt"]) for j in jobs) == [(0, 1), (1, 2), (2, 1)]
    assert {t["name"]: t["status"] for t in view["tasks"]}["publish"] == "done"
