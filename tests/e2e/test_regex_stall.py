"""A user's regex cannot stall the server (issue 13).

Python's `re` held the GIL while it backtracked, so one retry rule's pattern searched in one
diagnosis froze every thread of the server: health, pilots' heartbeats, the router, the sweep.
Here a real pilot fails a real job with a diagnosis the pattern backtracks on, while the test
keeps asking for health.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import wait_until

EVIL = "(x+x+)+y"
# The job's program: not found, so the pilot's diagnosis names it ("cannot start 'xx…': …"):
# Python's re tries every split of the x's before it reaches the `xxy` at the end (2**400 ways).
PROGRAM = "x" * 400 + "!xxy"


def _health_s(system: LocalSystem) -> float:
    """How long GET /v1/health took to answer 200."""
    req = urllib.request.Request(system.url + "/v1/health")
    req.add_header("Authorization", f"Bearer {system.token}")
    started = time.monotonic()
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    return time.monotonic() - started


def test_a_catastrophic_retry_pattern_never_stalls_the_server(
    system: LocalSystem, api: ApiClient
) -> None:
    # Given a task whose retry rule has a pattern Python's re would backtrack on for ages
    task = api.call(
        "POST",
        "/v1/tasks",
        {
            "name": "evil-rule", "command": [PROGRAM], "n_jobs": 1, "max_attempts": 3,
            "retry_rules": [{"pattern": EVIL, "action": "no_retry"}],
        },
    )  # fmt: skip

    # When its job fails with a long diagnosis holding the trap, and the rule is searched in it,
    # while the test asks for health all along
    answers: list[float] = []

    def ended() -> dict[str, object] | None:
        answers.append(_health_s(system))
        t: dict[str, object] = api.call("GET", f"/v1/tasks/{task['id']}")
        return t if t["status"] in ("done", "failed") else None

    assert wait_until(ended, 90, "the task to end")["status"] == "failed"

    # Then health answered within 1 s every time
    assert max(answers) < 1.0, answers
    # And the rule was searched in the diagnosis and matched (the `xxy` at its end): the job
    # was not retried
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    assert job["attempt"] == 1
    assert PROGRAM in job["error_diag"]
    assert job["error_diag"].endswith("retry rule 1: no retry")
    assert _health_s(system) < 1.0


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"name": "t", "command": ["true"], "n_jobs": 1,
             "retry_rules": [{"pattern": "(?<=a)b", "action": "retry"}]},
            "retry_rules.0: Value error, bad pattern",
        ),
        (
            {"workflow": {"name": "w", "tasks": [{"name": "a", "command": ["true"],
                                                  "inputs": ["v1"], "keys": {"visit": "(v)\\1"}}]}},
            "key 'visit': bad regular expression",
        ),
    ],
)  # fmt: skip
def test_a_pattern_re2_cannot_run_is_refused_over_http_with_422(
    system: LocalSystem, api: ApiClient, body: dict[str, object], says: str
) -> None:
    # Given a task (or workflow) whose pattern uses lookaround or a backreference
    path = "/v1/workflows" if "workflow" in body else "/v1/tasks"
    # When it is submitted, Then it is refused with 422 naming the field and the syntax
    with pytest.raises(ApiError) as e:
        api.call("POST", path, body)
    assert e.value.status == 422
    assert says in e.value.message
    assert "RE2 syntax: no backreferences or lookaround" in e.value.message
    # And nothing was stored
    assert system.store.list_tasks() == []
