"""The critical path in one round trip (issue 17) on the gcp backend, on the emulators: the
dispatch function under functions-framework, Firestore, Pub/Sub push, the Eventarc stand-in.

- A pilot's final report and its next acquire travel in one /update; the child that report
  released (right after the report's commit, in the same request: Firestore cannot commit the
  release with the report) comes back in its reply. The job.ended events are delivered all the
  same (Eventarc to `release`), and release nothing twice.
- An idle pilot's acquire waits in the dispatch function (a long-poll on a Firestore listener,
  `adapters.gcp.doorbell`) and returns as soon as a job is activated on its queue, or empty
  at its timeout, leaving no listener open.

The tests play the pilot with the wire calls it makes (the system launches none).
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.identity import Role
from skypanda.domain.models import Job
from skypanda.domain.states import WORKFLOW_FINAL, JobStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow, WorkflowSpec
from skypanda.handlers import workflow
from skypanda.pilot.agent import PILOT_VERSION
from skypanda.pilot.client import ApiClient
from skypanda.runtime.emulated import EmulatedCloud
from tests.e2e.conftest import emulated_cloud, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def quiet(
    tmp_path: Path, firestore_emulator: Any, pubsub_emulator: Any, storage_emulator: Any
) -> Iterator[EmulatedCloud]:
    """The gcp backend on the emulators, launching no pilot: the test plays them."""
    system: EmulatedCloud = emulated_cloud(tmp_path / "home", launch_pilots=False)
    yield system
    system.stop()


class Pilot:
    """One pilot's side of the protocol, over the gateway (as `skypanda.pilot.agent` calls it)."""

    def __init__(self, cloud: EmulatedCloud) -> None:
        launcher = ApiClient(cloud.url, cloud.users.add(f"l{time.monotonic_ns()}", Role.LAUNCHER))
        body = {
            "queue": "local", "host": "test", "pid": None,
            "resources": {"memory_mb": 2000, "cores": 1}, "version": PILOT_VERSION,
        }  # fmt: skip
        reply = launcher.call("POST", "/v1/pilots", body)
        self.registered: dict[str, Any] = reply
        self.id = str(reply["pilot"]["id"])
        self.client = ApiClient(cloud.url, reply["token"], timeout=90)
        self.path = f"/v1/pilots/{urllib.parse.quote(self.id, safe='')}"

    def acquire(self, n: int = 1, wait_s: float | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"n": n} if wait_s is None else {"n": n, "wait_s": wait_s}
        jobs: list[dict[str, Any]] = self.client.call("POST", f"{self.path}/acquire", body)["jobs"]
        return jobs

    def report(self, job: dict[str, Any], status: str, *, acquire: int) -> dict[str, Any]:
        report = {
            "job_id": job["id"], "attempt": job["attempt"], "status": status,
            "exit_code": 0, "error_code": None, "error_diag": "",
        }  # fmt: skip
        body = {"reports": [report], "acquire": acquire}
        reply: dict[str, Any] = self.client.call("POST", f"{self.path}/update", body)
        assert [r["accepted"] for r in reply["results"]] == [True], reply
        return reply


def _pipeline(cloud: EmulatedCloud, names: list[str]) -> Workflow:
    """A workflow of one-job tasks, each (job level) after the one before."""
    tasks: list[dict[str, Any]] = []
    for k, name in enumerate(names):
        task: dict[str, Any] = {"name": name, "command": ["true"], "n_jobs": 1}
        if k:
            task["depends"] = [{"task": names[k - 1]}]
        tasks.append(task)
    spec = WorkflowSpec.model_validate({"name": "path", "tasks": tasks})
    return workflow.submit_workflow(cloud.svc, spec, "tester")


def _jobs(cloud: EmulatedCloud, wf: Workflow) -> dict[str, Job]:
    out: dict[str, Job] = {}
    for task in cloud.store.workflow_tasks(wf.id):
        (job,) = cloud.store.list_jobs(task.id)
        out[task.spec.name] = job
    return out


def test_a_child_of_a_reported_parent_comes_back_in_the_same_reply(quiet: EmulatedCloud) -> None:
    # Given a workflow a -> b -> c on the emulators, and a pilot holding a
    wf = _pipeline(quiet, ["a", "b", "c"])
    pilot = Pilot(quiet)
    (a,) = wait_until(lambda: pilot.acquire(wait_s=5), 90, "a to be activated")
    # When it reports a finished and asks for one job in the same call
    reply = pilot.report(a, "finished", acquire=1)
    # Then b, released in that very request, is in the reply, held by this pilot
    (b,) = reply["jobs"]
    assert b["id"] == _jobs(quiet, wf)["b"].id
    assert b["status"] == "sent" and b["pilot_id"] == pilot.id
    # And so on down the chain, one round trip per link
    (c,) = pilot.report(b, "finished", acquire=1)["jobs"]
    assert pilot.report(c, "finished", acquire=1)["jobs"] == []
    # And the job.ended events were delivered all the same (Eventarc to `release`): the
    # workflow rolls up to done, and each job ran one attempt (none released twice)
    wait_until(lambda: quiet.store.get_workflow(wf.id).status in WORKFLOW_FINAL, 90, "the workflow")
    assert quiet.store.get_workflow(wf.id).status is WorkflowStatus.DONE
    assert {(j.status, j.attempt) for j in _jobs(quiet, wf).values()} == {(JobStatus.FINISHED, 1)}
    assert quiet.bridge is not None and quiet.bridge.delivered >= 3


def test_a_long_poll_returns_as_soon_as_a_job_is_activated(quiet: EmulatedCloud) -> None:
    # Given an idle pilot waiting in the dispatch function for up to 30 s (the server's cap)
    pilot = Pilot(quiet)
    got: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: got.append(pilot.acquire(wait_s=30)))
    waiter.start()
    wait_until(lambda: quiet.doorbell.waiting == 1, 30, "the long-poll to wait")
    assert quiet.doorbell.listening == ["local"]  # one listener, on its queue's head
    # When a task is submitted (its job activated by the split function)
    wf = _pipeline(quiet, ["only"])
    # Then the waiting acquire returns with its job, before its time is up
    waiter.join(timeout=60)
    assert not waiter.is_alive(), "the long-poll did not return on the activation"
    assert [j["id"] for j in got[0]] == [_jobs(quiet, wf)["only"].id]
    # And nothing is left listening once no acquire waits
    wait_until(lambda: quiet.doorbell.waiting == 0, 10, "the wait to end")
    assert quiet.doorbell.listening == []


def test_a_long_poll_returns_empty_at_its_timeout(quiet: EmulatedCloud) -> None:
    # Given a pilot and no work
    pilot = Pilot(quiet)
    # When it waits a second for jobs
    started = time.monotonic()
    jobs = pilot.acquire(wait_s=1)
    # Then it got none, after waiting (at least) that long, and no listener is left open
    assert jobs == []
    assert time.monotonic() - started >= 1
    assert quiet.doorbell.waiting == 0 and quiet.doorbell.listening == []
    assert quiet.doorbell.opened >= 1  # it did wait on a listener, not answer at once
