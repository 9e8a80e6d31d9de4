"""The scaler end to end on local processes: a burst scales pilots up to max_pilots and back
to min_pilots once the queue drains; push mode launches one pilot per job, sized to it."""

from __future__ import annotations

from collections.abc import Callable

from skypanda.adapters.local.runtime import LocalSystem
from skypanda.domain.models import Queue, Resources
from skypanda.pilot.client import ApiClient
from tests.e2e.conftest import fast_queue, wait_until


def _live(api: ApiClient, queue: str) -> list[dict[str, object]]:
    pilots = api.call("GET", "/v1/pilots", params={"queue": queue})["pilots"]
    return [p for p in pilots if p["status"] in ("submitted", "running")]


def test_a_burst_scales_up_to_max_pilots_and_back_to_min_after_draining(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a queue keeping 1 pilot ready, at most 3, whose pilots idle out after 3 s
    system = make_system(fast_queue(min_pilots=1, max_pilots=3, max_new_per_cycle=2))
    api = ApiClient(system.url, system.token)
    wait_until(lambda: len(_live(api, "local")) == 1, 30, "the ready pilot")

    # When a burst of 500 short jobs arrives
    task = api.call("POST", "/v1/tasks", {"name": "burst", "command": ["true"], "n_jobs": 500})

    # Then the scaler boosts to max_pilots (never more), the burst runs, and once drained the
    # extra pilots idle out, back to min_pilots
    peak = wait_until(lambda: (n := len(_live(api, "local"))) == 3 and n, 30, "3 pilots")
    assert peak == 3
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", 120)
    wait_until(lambda: len(_live(api, "local")) == 1, 30, "back to 1 pilot")
    assert max(len(_live(api, "local")) for _ in range(5)) <= 3
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
    wait_until(lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done", 60)
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
        30, "the push pilots to end",
    )  # fmt: skip
