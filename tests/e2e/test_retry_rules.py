"""Retry rules end to end (JEDI): an out-of-memory job is retried with more memory and
succeeds; a configuration error is not retried. Real pilots, real payloads."""

from __future__ import annotations

from pathlib import Path

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from skypanda.wire.codes import ErrorCode
from tests.e2e.conftest import Gate, wait_until


def _hog(gate: Gate) -> str:
    """A payload that takes about 270 MB, marks its attempt started, then holds that memory
    until the gate is released (so the pilot's memory watch, however slow, sees it)."""
    # (no braces: the task's command template would read them as placeholders)
    return (
        "import os, pathlib, time; b = bytearray(260 * 1024 * 1024)\n"
        f"root = pathlib.Path({str(gate.root)!r})\n"
        "(root / ('started.' + os.environ['SKYPANDA_ATTEMPT'])).write_text(str(os.getpid()))\n"
        "while not (root / 'go').exists(): time.sleep(0.05)\n"
        "print('fitted')"
    )


def _ended(api: ApiClient, task_id: str) -> dict[str, object]:
    return wait_until(
        lambda: (
            (t := api.call("GET", f"/v1/tasks/{task_id}"))["status"] in ("done", "failed") and t
        ),
        90,
        "the task to end",
    )


def test_an_out_of_memory_job_is_retried_with_more_memory_and_succeeds(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    # Given a job asking for 200 MB whose payload needs about 270 MB, doubling on retry
    gate = Gate(tmp_path / "gate")
    task = api.call(
        "POST",
        "/v1/tasks",
        {
            "name": "hungry", "command": ["python3", "-c", _hog(gate)], "n_jobs": 1,
            "max_attempts": 3, "resources": {"memory_mb": 200},
            "retry_rules": [{"codes": [1212], "action": "increase_memory", "factor": 2}],
        },
    )  # fmt: skip

    # When it runs: attempt 1 is killed for its memory, and attempt 2 holds the memory until
    # the test lets it finish
    wait_until(
        lambda: "2" in gate.started(),
        what="attempt 1 to be killed out of memory and attempt 2 to start",
    )
    gate.release()
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
