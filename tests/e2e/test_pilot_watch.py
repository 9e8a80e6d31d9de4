"""The pilot watches its payloads, end to end: memory above the job's limit, walltime, and a
silent (looping) payload are each killed with their own error code, shown by `skypanda jobs`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from skypanda.wire.codes import ErrorCode
from tests.e2e.conftest import cli, fast_queue, wait_until

HOG = (
    "import time; b = bytearray(400 * 1024 * 1024); print('allocated', flush=True)\n"
    "while True: time.sleep(0.1)"
)
FOREVER = ["sh", "-c", "echo start; while :; do sleep 0.1; done"]
"""Payloads that never end by themselves: only the pilot's watch ends them."""


@pytest.mark.parametrize(
    ("spec", "code", "diag"),
    [
        (
            {"command": ["python3", "-c", HOG], "resources": {"memory_mb": 150}},
            ErrorCode.OUT_OF_MEMORY,
            "150 MB",
        ),
        (
            {"command": FOREVER, "resources": {"walltime": "2s"}},
            ErrorCode.MAX_TIME_EXCEEDED,
            "",
        ),
        (
            {"command": FOREVER},
            ErrorCode.LOOPING_JOB,
            "",
        ),
    ],
    ids=["out-of-memory", "walltime", "looping"],
)
def test_a_payload_breaking_a_limit_is_killed_with_its_code(
    make_system: Callable[..., LocalSystem],
    spec: dict[str, Any],
    code: ErrorCode,
    diag: str,
) -> None:
    # Given a queue whose pilots call a payload silent for 3 s looping
    system = make_system(fast_queue(looping_timeout_s=3.0))
    api = ApiClient(system.url, system.token)
    body = {"name": "limits", "n_jobs": 1, "max_attempts": 1, **spec}

    # When a job breaks its limit
    task = api.call("POST", "/v1/tasks", body)
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "failed",
        what="the payload to be killed and the task to fail",
    )

    # Then it failed with that limit's code and a diagnosis, and `skypanda jobs` names the code
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    assert job["error_code"] == code, job
    assert diag in job["error_diag"]
    shown = cli(system, "jobs", task["id"])
    assert f"{int(code)} {code.name}" in shown.stdout
