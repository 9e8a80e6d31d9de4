"""The real panda-client's `Client.killJobs(ids)` (POST /api/v1/job/kill) kills one job of a
running task through the PanDA facade: it answers a boolean per PandaID, the job's pilot
kills it, and the task's other job runs on; another user's killJobs kills nothing. See
`tests/e2e/panda_client.py` for how the client is installed and where its tokens come from.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skypanda.api.panda.mapping import panda_id
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, fast_queue, wait_until
from tests.e2e.panda_client import AUDIENCE, Issuer, PandaClient, install_panda_client, oidc_issuer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

UNKNOWN = 99_999_999_999  # a PandaID of no job


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch) -> Iterator[Issuer]:
    with oidc_issuer() as found:
        monkeypatch.setenv("SKYPANDA_OIDC_ISSUER", found.url)
        monkeypatch.setenv("SKYPANDA_OIDC_AUDIENCE", AUDIENCE)
        yield found


def _submit(url: str, token: str, body: dict[str, object]) -> str:
    """A task submitted over skypanda's own API with the user's token: its id."""
    req = urllib.request.Request(
        f"{url}/v1/tasks", json.dumps(body).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as r:
        return str(json.loads(r.read())["id"])


def test_kill_jobs_kills_one_job_of_a_running_task(
    make_system: Callable[..., LocalSystem], issuer: Issuer, tmp_path: Path
) -> None:
    # Given alice's task of two jobs whose payloads run until let go
    venv = install_panda_client()
    system = make_system(fast_queue(max_pilots=2))
    token = issuer.token("alice", "Alice Smith")
    alice = PandaClient(venv, system.url, token, tmp_path / "alice")
    bob = PandaClient(venv, system.url, issuer.token("bob", "Bob"), tmp_path / "bob")
    gate = Gate(tmp_path / "gate")
    body = {"name": "held", "n_jobs": 2, "command": gate.command()}
    task_id = _submit(system.url, token, body)
    wait_until(lambda: gate.started() == {"0", "1"}, 90, "both payloads to start")
    api = ApiClient(system.url, system.token)
    jobs = api.call("GET", f"/v1/tasks/{task_id}/jobs", params={"offset": 0})["jobs"]
    first, second = (j["id"] for j in sorted(jobs, key=lambda j: j["index"]))

    # When bob asks to kill alice's job: not killed
    assert bob.call("killJobs", [panda_id(second)]).result() == [0, [False]]

    # When alice kills one job (and a PandaID of no job)
    ran = alice.call("killJobs", [panda_id(first), UNKNOWN])

    # Then the client reads a boolean per PandaID; the job's pilot kills it, it ends
    # cancelled, and the other job runs on
    assert ran.result() == [0, [True, False]], ran.output
    wait_until(lambda: api.call("GET", f"/v1/jobs/{first}")["status"] == "cancelled", 90,
               "the job killed by its pilot")  # fmt: skip
    assert api.call("GET", f"/v1/jobs/{second}")["status"] in ("starting", "running")
    assert api.call("GET", f"/v1/tasks/{task_id}")["status"] == "running"
    # And killing it again answers false: it has ended
    assert alice.call("killJobs", [panda_id(first)]).result() == [0, [False]]
