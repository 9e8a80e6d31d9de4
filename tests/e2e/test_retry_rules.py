"""Retry rules end to end (JEDI): an out-of-memory job is retried with more memory and
succeeds; a configuration error is not retried. Real pilots, real payloads."""

from __future__ import annotations

from skypanda.adapters.local.runtime import LocalSystem
from skypanda.domain.codes import ErrorCode
from skypanda.pilot.client import ApiClient
from tests.e2e.conftest import wait_until

HOG = "import time; b = bytearray(260 * 1024 * 1024); time.sleep(1.5); print('fitted')"


def _ended(api: ApiClient, task_id: str) -> dict[str, object]:
    return wait_until(
        lambda: (
            (t := api.call("GET", f"/v1/tasks/{task_id}"))["status"] in ("done", "failed") and t
        ),
        90,
        "the task to end",
    )


def test_an_out_of_memory_job_is_retried_with_more_memory_and_succeeds(
    system: LocalSystem, api: ApiClient
) -> None:
    # Given a job asking for 200 MB whose payload needs about 270 MB, doubling on retry
    task = api.call(
        "POST",
        "/v1/tasks",
        {
            "name": "hungry", "command": ["python3", "-c", HOG], "n_jobs": 1, "max_attempts": 3,
            "resources": {"memory_mb": 200},
            "retry_rules": [{"codes": [1212], "action": "increase_memory", "factor": 2}],
        },
    )  # fmt: skip

    # When it runs
    assert _ended(api, task["id"])["status"] == "done"

    # Then attempt 1 was killed out of memory, attempt 2 asked for 400 MB and finished
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    detail = api.call("GET", f"/v1/jobs/{job['id']}")
    first, second = detail["attempts"]
    assert first["error_code"] == ErrorCode.OUT_OF_MEMORY
    assert "retry rule 1: memory 200 -> 400 MB" in first["error_diag"]
    assert second["status"] == "finished"
    assert detail["resources"]["memory_mb"] == 400


def test_a_configuration_error_is_not_retried(system: LocalSystem, api: ApiClient) -> None:
    # Given a task whose rules say exit code 64 (EX_USAGE: bad configuration) is not retried
    task = api.call(
        "POST",
        "/v1/tasks",
        {
            "name": "misconfigured", "command": ["sh", "-c", "echo bad option >&2; exit 64"],
            "n_jobs": 1, "max_attempts": 5,
            "retry_rules": [{"exit_codes": [64], "action": "no_retry"}],
        },
    )  # fmt: skip

    # When it runs, Then it fails after one attempt, saying why it was not retried
    assert _ended(api, task["id"])["status"] == "failed"
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    assert job["attempt"] == 1 and job["exit_code"] == 64
    assert job["error_diag"].endswith("retry rule 1: no retry")
