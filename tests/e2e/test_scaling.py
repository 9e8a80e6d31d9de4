"""The scaler end to end on local processes: a burst scales pilots up to max_pilots and back
to min_pilots once the queue drains; push mode launches one pilot per job, sized to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skypanda.domain.models import Queue, Resources
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, fast_queue, wait_until


def _live(api: ApiClient, queue: str) -> list[dict[str, object]]:
    pilots = api.call("GET", "/v1/pilots", params={"queue": queue})["pilots"]
    return [p for p in pilots if p["status"] in ("submitted", "running")]


def test_a_burst_scales_up_to_max_pilots_and_back_to_min_after_draining(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a queue keeping 1 pilot ready, at most 3, whose pilots idle out after 3 s
    system = make_system(fast_queue(min_pilots=1, max_pilots=3, max_new_per_cycle=2))
    api = ApiClient(system.url, system.token)
    wait_until(lambda: len(_live(api, "local")) == 1, what="the ready pilot")

    # When a burst of 500 short jobs arrives (held until the test saw the scaler's answer)
    gate = Gate(tmp_path / "gate")
    spec = {"name": "burst", "command": gate.command(mark=None), "n_jobs": 500}
    task = api.call("POST", "/v1/tasks", spec)

    # Then the scaler boosts to max_pilots (never more), the burst runs, and once drained the
    # extra pilots idle out, back to min_pilots
    seen: list[int] = []  # live pilots, at every look

    def live() -> int:
        seen.append(len(_live(api, "local")))
        return seen[-1]

    wait_until(lambda: live() >= 3, what="3 pilots")
    gate.release()

    def burst_done() -> bool:
        live()
        return bool(api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done")

    wait_until(burst_done, 120, "the burst to run")
    wait_until(lambda: live() == 1, what="back to 1 pilot")
    assert max(seen) <= 3
    (view,) = [q for q in api.call("GET", "/v1/queues")["queues"] if q["name"] == "local"]
    assert view["last_decision"]


def test_push_mode_runs_one_pilot_per_job_with_its_resources(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a push queue (no pilots kept ready)
    system = make_system(fast_queue(min_pilots=0, max_pilots=0))
    system.store.put_queue(
        Queue(
            name="push", mode="push", min_pilots=0, max_pilots=5, max_new_per_cycle=5,
            max_queued=5, heartbeat_interval_s=0.5, heartbeat_timeout_s=4.0, idle_timeout_s=3.0,
            pilot_resources=Resources(memory_mb=8000, cores=4),
        )
    )  # fmt: skip
    api = ApiClient(system.url, system.token)

    # When a task of 3 jobs of 700 MB x 1 core is submitted there
    spec = {"name": "pushed", "command": ["true"], "n_jobs": 3, "queue": "push",
            "resources": {"memory_mb": 700, "cores": 1}}  # fmt: skip
    task = api.call("POST", "/v1/tasks", spec)

    # Then each job ran on a pilot of its own, launched for it and sized to it, which ended
    wait_until(
        lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done",
        what="the pushed task to be done",
    )
    jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    pilots = {p["id"]: p for p in api.call("GET", "/v1/pilots", params={"queue": "push"})["pilots"]}
    assert len({j["pilot_id"] for j in jobs}) == 3
    for job in jobs:
        pilot = pilots[job["pilot_id"]]
        assert pilot["push_job"] == job["id"]
        assert pilot["resources"]["memory_mb"] == 700 and pilot["resources"]["cores"] == 1
    wait_until(
        lambda: all(p["status"] == "finished" for p in
                    api.call("GET", "/v1/pilots", params={"queue": "push"})["pilots"]),
        what="the push pilots to end",
    )  # fmt: skip
