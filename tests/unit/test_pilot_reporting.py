"""Specification of who sends a job's final report (`skypanda.pilot.reporting.Reporter`): the
worker that ran the job, at once, when a slot has nothing to run; the reporter's thread when
that send fails, or when it is not at once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from skypanda.pilot import agent, reporting
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.pilot.config import PilotConfig
from skypanda.pilot.held import HeldJob, Registry
from skypanda.pilot.outage import Outage
from skypanda.pilot.reporting import REPORT_DELAY_S, Reporter, report_delay


class Server:
    """Takes a pilot's updates, noting the thread each came from; refuses the first
    `unreachable` of them as a server that does not answer."""

    def __init__(self, unreachable: int = 0) -> None:
        self.outage = Outage(0)
        self.updates: list[tuple[str, list[str], dict[str, Any]]] = []
        self.bodies: list[dict[str, Any]] = []
        self.tries: list[dict[str, Any]] = []
        self.unreachable = unreachable
        self.cond = threading.Condition()

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        with self.cond:
            self.tries.append(kw)
            if self.unreachable:
                self.unreachable -= 1
                raise ApiError(0, "cannot reach the server")
            ids = [r["job_id"] for r in body["reports"]]
            self.bodies.append(body)
            self.updates.append((threading.current_thread().name, ids, kw))
            self.cond.notify_all()
        return {"results": [{"job_id": i, "accepted": True} for i in ids], "jobs": []}


def final(held: HeldJob) -> dict[str, Any]:
    return {"job_id": held.id, "attempt": 1, "status": "finished", "exit_code": 0,
            "error_code": None, "error_diag": ""}  # fmt: skip


def reporter(
    server: Server, registry: Registry, asked: list[int], max_cores: int | None = None
) -> Reporter:
    def acquire() -> tuple[int, int | None]:
        asked.append(1)
        return 1, max_cores

    return Reporter(
        server,  # type: ignore[arg-type]
        "p1",
        registry,
        2.0,
        lambda _: None,
        lambda _: None,
        acquire=acquire,
        on_jobs=lambda jobs, n: asked.append(-n),
        eager=lambda: True,
    )


def test_a_final_report_is_sent_by_the_worker_itself_when_a_slot_is_free() -> None:
    # Given a reporter whose thread is not even started, and a job that just ended
    server, registry = Server(), Registry(on_empty=lambda: None)
    asked: list[int] = []
    held = HeldJob({"id": "j1", "attempt": 1})
    held.started = held.ended = True
    registry.add(held)
    # When its worker submits its final report
    reporter(server, registry, asked).submit(held, final(held), here=True)
    # Then the worker sent it, once and at once, asking for the next job with it
    assert server.updates == [(threading.current_thread().name, ["j1"], server.updates[0][2])]
    assert server.updates[0][2] == {"patient": False, "once": True}
    assert asked == [1, -1]
    assert len(registry) == 0
    assert server.bodies[0]["acquire"] == 1 and "max_cores" not in server.bodies[0]


def test_a_final_report_the_worker_could_not_send_goes_by_the_reporter_thread() -> None:
    # Given a server that does not answer the first try
    server, registry = Server(unreachable=1), Registry(on_empty=lambda: None)
    asked: list[int] = []
    held = HeldJob({"id": "j1", "attempt": 1})
    held.started = held.ended = True
    registry.add(held)
    sender = reporter(server, registry, asked)
    sender.start()
    try:
        # When the worker submits its final report
        sender.submit(held, final(held), here=True)
        # Then the reporter's thread sends it, patiently, and the reserved job was given back
        with server.cond:
            assert server.cond.wait_for(lambda: server.updates, timeout=30)
    finally:
        sender.close(30)
    (thread, ids, kw) = server.updates[0]
    assert (thread, ids, kw["patient"]) == ("reporter", ["j1"], True)
    assert server.tries[0] == {"patient": False, "once": True}
    assert asked[:2] == [1, -1]
    assert len(registry) == 0


def test_a_report_while_the_pilot_has_more_to_run_goes_within_the_report_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a reporter told a report delay of 1 ms, whose periodic flush (for output) would
    # come only in an hour, and whose slots all have work (no report is sent at once)
    monkeypatch.setattr(reporting, "REPORT_FLUSH_S", 3600.0)
    server, registry = Server(), Registry(on_empty=lambda: None)
    held = HeldJob({"id": "j1", "attempt": 1})
    held.started = held.ended = True
    registry.add(held)
    busy = Reporter(
        server,  # type: ignore[arg-type]
        "p1", registry, 2.0, lambda _: None, lambda _: None, eager=lambda: False, delay_s=0.001,
    )  # fmt: skip
    busy.start()
    try:
        # When a job's final report is queued while the reporter's thread waits
        busy.submit(held, final(held))
        # Then it is sent by the reporter's thread, without waiting for the hourly flush
        with server.cond:
            assert server.cond.wait_for(lambda: server.updates, timeout=30)
        assert server.updates[0][:2] == ("reporter", ["j1"])
    finally:
        busy.close(timeout=30)


def test_the_report_delay_is_what_the_server_told_if_it_makes_sense() -> None:
    assert report_delay(0.15) == 0.15
    assert report_delay(1) == 1.0
    for nonsense in (None, 0, -1, 11, True, "0.1", float("nan")):
        assert report_delay(nonsense) == REPORT_DELAY_S


def test_a_report_s_acquire_says_the_most_cores_a_job_may_take() -> None:
    # Given a pilot whose free cores limit the jobs it may take (`PilotAgent._reserve`)
    server, registry = Server(), Registry(on_empty=lambda: None)
    held = HeldJob({"id": "j1", "attempt": 1})
    held.started = held.ended = True
    registry.add(held)
    # When its worker sends the job's final report, asking for a job of 2 cores at most
    reporter(server, registry, [], max_cores=2).submit(held, final(held), here=True)
    # Then the /update says so, as an acquire does (the server claims only jobs that fit)
    assert (server.bodies[0]["acquire"], server.bodies[0]["max_cores"]) == (1, 2)


def _long_payload(cores: int, slots: int, running_cores: int) -> Any:
    """A pilot of `cores` and `slots` whose one payload, of `running_cores`, has run long."""
    cfg = PilotConfig(server="http://127.0.0.1:1", token=None, queue="q", cores=cores,
                      slots=slots)  # fmt: skip
    pilot = agent._Pilot(cfg, ApiClient(cfg.server, None))
    held = HeldJob({"id": "long", "attempt": 1, "resources": {"cores": running_cores}})
    held.started = True
    assert held.started_at is not None
    held.started_at -= 3600.0
    pilot.registry.add(held)
    pilot._active = 1
    return pilot


def test_a_report_asks_for_what_the_cores_a_long_payload_leaves_free() -> None:
    # Given a 4-core pilot of 4 slots whose 3-core payload has run for an hour
    pilot = _long_payload(cores=4, slots=4, running_cores=3)
    # When a report asks what to take in its reply
    # Then it asks for a job of 1 core at most (before: nothing, the main thread asked later)
    assert pilot._reserve_for_report() == (1, 1)
    # And while the main thread's long-poll waits for that core, the report asks for nothing
    # (the two together would take two jobs for one core)
    pilot._asking = pilot._long_polling = 1
    assert pilot._reserve_for_report()[0] == 0


def test_a_report_asks_for_nothing_when_a_long_payload_holds_every_core() -> None:
    # Given a 4-core pilot whose 4-core payload has run for an hour: no job, no core to say
    pilot = _long_payload(cores=4, slots=4, running_cores=4)
    assert pilot._reserve_for_report() == (0, None)
