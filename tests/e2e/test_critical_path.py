"""The critical path in one round trip (issue 17), on the embedded backend over real HTTP.

- A pilot's final report and its next acquire travel in one /update; the children that report
  released (in the report's own commit) come back in its reply. The job.ended events are in
  the outbox all the same, and their later delivery releases nothing twice.
- An idle pilot's acquire waits on the server (a long-poll) and returns as soon as a job is
  activated on its queue, or empty at its timeout; long-polls beyond the server's cap answer
  at once, so they never hold every server thread.
- Pilots that know none of this (no `wait_s`, no `acquire`) work as before, and the real
  pilot runs a chain to its end with every job run once.

Most tests play the pilot with the wire calls it makes (the system launches none), so they
see each reply; the last ones run real pilots.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from skypanda.adapters.local.doorbell import LocalDoorbell
from skypanda.adapters.local.tokens import LocalTokens
from skypanda.domain.identity import Role
from skypanda.domain.models import Job
from skypanda.domain.states import WORKFLOW_FINAL, JobStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow, WorkflowSpec
from skypanda.handlers import workflow
from skypanda.pilot.agent import PILOT_VERSION
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import fast_queue, wait_until

pytestmark = pytest.mark.e2e


class Pilot:
    """One pilot's side of the protocol, as `skypanda.pilot.agent` makes the calls."""

    def __init__(self, system: LocalSystem) -> None:
        users = LocalTokens(system.opts.home / "users.json")
        launcher = ApiClient(system.url, users.add(f"launch{time.monotonic_ns()}", Role.LAUNCHER))
        body = {
            "queue": "local", "host": "test", "pid": None,
            "resources": {"memory_mb": 2000, "cores": 1}, "version": PILOT_VERSION,
        }  # fmt: skip
        reply = launcher.call("POST", "/v1/pilots", body)
        self.id = str(reply["pilot"]["id"])
        self.client = ApiClient(system.url, reply["token"], timeout=90)
        self.path = f"/v1/pilots/{urllib.parse.quote(self.id, safe='')}"

    def acquire(self, n: int = 1, wait_s: float | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"n": n} if wait_s is None else {"n": n, "wait_s": wait_s}
        jobs: list[dict[str, Any]] = self.client.call("POST", f"{self.path}/acquire", body)["jobs"]
        return jobs

    def report(
        self, job: dict[str, Any], status: str, *, acquire: int | None = None, exit_code: int = 0
    ) -> dict[str, Any]:
        final = status in ("finished", "failed")
        report = {
            "job_id": job["id"], "attempt": job["attempt"], "status": status,
            "exit_code": exit_code if final else None, "error_code": None, "error_diag": "",
        }  # fmt: skip
        body: dict[str, Any] = {"reports": [report]}
        if acquire is not None:
            body["acquire"] = acquire
        reply: dict[str, Any] = self.client.call("POST", f"{self.path}/update", body)
        assert [r["accepted"] for r in reply["results"]] == [True], reply
        return reply


@pytest.fixture
def quiet(make_system: Callable[..., LocalSystem]) -> LocalSystem:
    """A system that launches no pilot: the test plays them."""
    return make_system(fast_queue(), launch_pilots=False)


def _pipeline(system: LocalSystem, tasks: list[dict[str, Any]]) -> Workflow:
    spec = WorkflowSpec.model_validate({"name": "path", "tasks": tasks})
    return workflow.submit_workflow(system.svc, spec, "tester")


def _task(name: str, after: str | None = None, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "command": ["true"], "n_jobs": 1, **fields}
    if after is not None:
        task["depends"] = [{"task": after}]  # job level: job i after job i of `after`
    return task


def _jobs(system: LocalSystem, wf: Workflow) -> dict[str, Job]:
    """The workflow's jobs by task name (one job per task here)."""
    out: dict[str, Job] = {}
    for task in system.store.workflow_tasks(wf.id):
        (job,) = system.store.list_jobs(task.id)
        out[task.spec.name] = job
    return out


def _ended(system: LocalSystem, wf: Workflow, status: WorkflowStatus) -> None:
    wait_until(lambda: system.store.get_workflow(wf.id).status in WORKFLOW_FINAL, what="the end")
    assert system.store.get_workflow(wf.id).status is status


def test_a_child_of_a_reported_parent_comes_back_in_the_same_reply(quiet: LocalSystem) -> None:
    # Given a workflow a -> b -> c and a pilot holding a, running
    wf = _pipeline(quiet, [_task("a"), _task("b", "a"), _task("c", "b")])
    pilot = Pilot(quiet)
    (a,) = pilot.acquire(wait_s=30)  # the root is activated once the router made the jobs
    pilot.report(a, "running")
    # When it reports a finished and asks for one job in the same call
    reply = pilot.report(a, "finished", acquire=1)
    # Then b, released by that very report, is in the reply, held by this pilot
    assert [j["id"] for j in reply["jobs"]] == [_jobs(quiet, wf)["b"].id]
    (b,) = reply["jobs"]
    assert b["status"] == "sent" and b["pilot_id"] == pilot.id
    # And so on down the chain, one round trip per link
    (c,) = pilot.report(b, "finished", acquire=1)["jobs"]
    assert pilot.report(c, "finished", acquire=1)["jobs"] == []
    # And the job.ended events were delivered all the same: the workflow rolls up to done,
    # each job ran one attempt (none released twice, none run again)
    _ended(quiet, wf, WorkflowStatus.DONE)
    jobs = _jobs(quiet, wf)
    assert {(j.status, j.attempt) for j in jobs.values()} == {(JobStatus.FINISHED, 1)}
    # (counted once its handler returned, which is after the rollup the test saw: waited for)
    counts = quiet.router.pipeline.counts
    wait_until(lambda: counts["dev.skypanda.job.ended:delivered"] >= 3, what="3 deliveries")


def test_a_failed_parent_cancels_its_child_in_the_report_commit(quiet: LocalSystem) -> None:
    # Given a -> b, where a has one attempt and fails
    wf = _pipeline(quiet, [_task("a", max_attempts=1), _task("b", "a")])
    pilot = Pilot(quiet)
    (a,) = pilot.acquire(wait_s=30)
    # When a's failure is reported with an acquire
    reply = pilot.report(a, "failed", acquire=1, exit_code=3)
    # Then nothing comes back: b was cancelled, in that commit, missing its parent
    assert reply["jobs"] == []
    assert _jobs(quiet, wf)["b"].status is JobStatus.CANCELLED
    _ended(quiet, wf, WorkflowStatus.FAILED)


def test_a_long_poll_returns_as_soon_as_a_job_is_activated(quiet: LocalSystem) -> None:
    # Given an idle pilot waiting on the server for up to a minute
    pilot = Pilot(quiet)
    got: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: got.append(pilot.acquire(wait_s=60)))
    waiter.start()
    wait_until(lambda: quiet.doorbell.waiting == 1, what="the long-poll to wait")
    # When a task is submitted
    wf = _pipeline(quiet, [_task("only")])
    # Then the waiting acquire returns with its job (long before its minute is up)
    waiter.join(timeout=50)
    assert not waiter.is_alive(), "the long-poll did not return on the activation"
    assert [j["id"] for j in got[0]] == [_jobs(quiet, wf)["only"].id]
    assert quiet.doorbell.waiting == 0


def test_a_long_poll_returns_empty_at_its_timeout(quiet: LocalSystem) -> None:
    # Given a pilot and no work
    pilot = Pilot(quiet)
    # When it waits half a second for jobs
    started = time.monotonic()
    jobs = pilot.acquire(wait_s=0.5)
    # Then it got none, after waiting (at least) that long, and no waiter is left behind
    assert jobs == []
    assert time.monotonic() - started >= 0.5
    assert quiet.doorbell.waiting == 0


def test_long_polls_beyond_the_cap_answer_at_once(quiet: LocalSystem) -> None:
    # Given a server that lets one acquire wait at a time, and one waiting
    quiet.doorbell.max_waiters = 1
    first, second = Pilot(quiet), Pilot(quiet)
    got: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: got.append(first.acquire(wait_s=60)))
    waiter.start()
    wait_until(lambda: quiet.doorbell.waiting == 1, what="the first long-poll to wait")
    # When a second pilot asks to wait too
    jobs = second.acquire(wait_s=60)
    # Then it is answered at once, empty, while the first still waits
    assert jobs == [] and waiter.is_alive() and quiet.doorbell.waiting == 1
    # And the first one still gets the next job
    _pipeline(quiet, [_task("only")])
    waiter.join(timeout=50)
    assert len(got[0]) == 1


def test_long_poll_and_acquire_bad_input_is_refused_with_the_field_named(
    quiet: LocalSystem,
) -> None:
    pilot = Pilot(quiet)
    for body in ({"n": 1, "wait_s": -1}, {"n": 1, "wait_s": "soon"}, {"n": 1, "wait_s": 1e9}):
        with pytest.raises(ApiError) as refused:
            pilot.client.call("POST", f"{pilot.path}/acquire", body)
        assert refused.value.status in (400, 422) and "wait_s" in refused.value.message
    with pytest.raises(ApiError) as refused:
        pilot.client.call("POST", f"{pilot.path}/update", {"reports": [], "acquire": -2})
    assert refused.value.status in (400, 422) and "acquire" in refused.value.message


def test_an_old_style_pilot_works_without_long_poll_or_combined_acquire(
    quiet: LocalSystem,
) -> None:
    # Given a pilot that never sends wait_s nor acquire
    wf = _pipeline(quiet, [_task("a"), _task("b", "a")])
    pilot = Pilot(quiet)
    a = wait_until(lambda: pilot.acquire(), what="a to be ready")[0]
    # When it reports a finished, then polls for work as it always did
    reply = pilot.report(a, "finished")
    # Then its reply is the old one (no jobs), and the child is there for its next poll
    assert "jobs" not in reply and reply["drain"] is False
    (b,) = wait_until(lambda: pilot.acquire(), what="b to be ready")
    assert b["id"] == _jobs(quiet, wf)["b"].id
    pilot.report(b, "finished")
    _ended(quiet, wf, WorkflowStatus.DONE)


def test_a_stopping_server_ends_the_long_polls_at_once(quiet: LocalSystem) -> None:
    # Given a pilot waiting on the server for a minute
    pilot = Pilot(quiet)
    got: list[list[dict[str, Any]]] = []
    waiter = threading.Thread(target=lambda: got.append(pilot.acquire(wait_s=60)))
    waiter.start()
    wait_until(lambda: quiet.doorbell.waiting == 1, what="the long-poll to wait")
    # When the doorbell closes (the first step of stopping the system)
    quiet.doorbell.close()
    # Then the wait ends with no job, and new waits do not start
    waiter.join(timeout=50)
    assert got == [[]]
    assert pilot.acquire(wait_s=60) == []


def test_the_doorbell_keeps_a_ring_that_came_before_the_wait() -> None:
    bell = LocalDoorbell(max_waiters=1)
    seen = bell.seen("q")
    bell.ring(["q"])  # between the look for work and the wait
    assert bell.wait("q", seen, 60) is True  # at once: the ring is not lost
    assert bell.wait("other", bell.seen("other"), 0.01) is False
    with pytest.raises(ValueError, match="max_waiters"):
        LocalDoorbell(max_waiters=-1)


def test_real_pilots_run_a_chain_each_job_once(make_system: Callable[..., LocalSystem]) -> None:
    # Given real pilots and a chain of 30 jobs (one graph task, each after the one before)
    system = make_system(fast_queue(min_pilots=2, max_pilots=2, idle_timeout_s=30.0))
    nodes = [
        {"id": f"j{k}", "task": "link", "inputs": [f"i{k}"], "parents": [f"j{k - 1}"] if k else []}
        for k in range(30)
    ]
    spec = WorkflowSpec.model_validate(
        {"name": "chain", "graph": "g", "tasks": [{"name": "link", "command": ["true"],
                                                   "graph": True, "max_attempts": 1}]}
    )  # fmt: skip
    lines = [(json.dumps(n) + "\n").encode() for n in nodes]
    wf = workflow.submit_workflow(system.svc, spec, "tester", iter(lines))
    # When it runs
    wait_until(
        lambda: system.store.get_workflow(wf.id).status in WORKFLOW_FINAL, 120, "the chain's end"
    )
    # Then it is done, every job finished on its first attempt, each after its parent ended
    assert system.store.get_workflow(wf.id).status is WorkflowStatus.DONE
    (task,) = system.store.workflow_tasks(wf.id)
    jobs = {j.id: j for j in system.store.list_jobs(task.id)}
    assert {(j.status, j.attempt) for j in jobs.values()} == {(JobStatus.FINISHED, 1)}
    for job in jobs.values():
        for parent in job.parents:
            ended = jobs[parent].ended_at
            assert ended is not None and job.started_at is not None
            assert job.started_at >= ended


# -- the store's side: writes that commit together, and the ring after the commit ------------


def _store(tmp_path: Any) -> Any:
    from skypanda.adapters.local.sqlite import SqliteStore

    return SqliteStore(tmp_path / "db.sqlite", clock=time.time)


def test_writes_in_an_atomic_scope_commit_together_or_not_at_all(tmp_path: Any) -> None:
    from skypanda.domain.events import jobs_activated

    # Given a store whose commits are heard (events written, jobs activated)
    store = _store(tmp_path)
    heard: list[object] = []
    store.on_events = lambda: heard.append("events")
    store.on_activated = lambda queues: heard.append(set(queues))
    try:
        # When two writes run in a scope that then fails
        with pytest.raises(RuntimeError), store.atomic() as together:
            assert together is True
            store.add_events([jobs_activated("q1", 1, key="a")])
            store.add_events([jobs_activated("q2", 1, key="b")])
            raise RuntimeError("boom")
        # Then neither is stored, and nothing was heard
        assert store.pending_events(10) == [] and heard == []
        # When an inner write fails but the scope goes on
        with store.atomic():
            store.add_events([jobs_activated("q1", 1, key="c")])
            with pytest.raises(RuntimeError), store.atomic():
                store.add_events([jobs_activated("q3", 1, key="d")])
                raise RuntimeError("inner")
            assert heard == []  # nothing is heard before the scope commits
        # Then only the inner write was undone; the commit was heard once it happened
        assert [e.event.id for e in store.pending_events(10)] == ["jobs-activated:q1:c"]
        assert "events" in heard and {"q1"} <= set().union(*(h for h in heard if h != "events"))
    finally:
        store.close()


def test_the_throughput_bench_measures_a_small_chain(tmp_path: Any) -> None:
    from skypanda.cli.bench_throughput import run_throughput

    # When the bench runs a chain of 12 jobs on one pilot, with one warm try
    result = run_throughput("chain", 12, 1, 8, 1, tmp_path)
    # Then every job ran, and each figure the issue asks for is there, measured
    assert result["status"] == "done" and result["jobs"] == 12
    assert result["jobs_per_s"] > 0 and result["spawn_floor_per_s"] > 0
    assert result["submit_to_running_ms_p50"] is not None
    assert result["dependency_ms_p50"] is not None and result["dependency_ms_p50"] >= 0
    assert result["link_ms"] > 0


def test_a_failed_release_in_the_report_leaves_the_children_to_the_events(
    quiet: LocalSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skypanda.domain.errors import BackendUnavailable
    from skypanda.handlers import release

    # Given a -> b, and a release that fails once (the one in a's report)
    wf = _pipeline(quiet, [_task("a"), _task("b", "a")])
    pilot = Pilot(quiet)
    (a,) = pilot.acquire(wait_s=30)
    real, failed = release.release_children_of, []

    def once(svc: Any, ended: Any, **how: Any) -> Any:
        if not failed:
            failed.append(True)
            raise BackendUnavailable("injected")
        return real(svc, ended, **how)

    monkeypatch.setattr(release, "release_children_of", once)
    # When a's end is reported with an acquire
    reply = pilot.report(a, "finished", acquire=1)
    # Then the report stands (accepted, a finished) but b is not in the reply
    assert reply["jobs"] == [] and failed
    assert _jobs(quiet, wf)["a"].status is JobStatus.FINISHED
    # And the delivery of a's job.ended releases b
    (b,) = wait_until(lambda: pilot.acquire(), what="b released by the event")
    assert b["id"] == _jobs(quiet, wf)["b"].id
