"""Fair share over HTTP: two users, each with their own token, share a queue of a real embedded
system. alice's 2,000 queued jobs do not starve bob's 10, submitted after hers.

The system launches no pilots: the test plays them, with the wire calls a pilot makes (register
with a launch credential, then with its own: acquire, heartbeat, update). The handler-level
version of this test is tests/handlers/test_fair_share.py.
"""

from __future__ import annotations

import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.domain.identity import Role
from skypanda.pilot.agent import PILOT_VERSION
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import fast_queue, wait_until

pytestmark = pytest.mark.e2e

BIG, SMALL = 2_000, 10
PILOTS, PER_ACQUIRE, MAX_ROUNDS = 2, 64, 50


@dataclass
class World:
    system: LocalSystem
    clients: dict[str, ApiClient]  # by user name, each with its own token
    launch_token: str


@pytest.fixture
def world(make_system: Callable[..., LocalSystem]) -> World:
    system = make_system(fast_queue(), launch_pilots=False)
    # The users are added to the system's users file beside the running server, as
    # `skypanda users add` does: the server takes them at their first request.
    users = LocalTokens(system.opts.home / "users.json")
    clients = {name: ApiClient(system.url, users.add(name, Role.USER)) for name in ("alice", "bob")}
    return World(system, clients, users.add("launch1", Role.LAUNCHER))


class Pilot:
    """One pilot's side of the protocol, call for call as `skypanda.pilot.agent` makes them."""

    def __init__(self, url: str, launch_token: str) -> None:
        launcher = ApiClient(url, launch_token)
        body = {
            "queue": "local", "host": "test", "pid": None,
            "resources": {"memory_mb": 2000, "cores": 1}, "version": PILOT_VERSION,
        }  # fmt: skip
        reply = launcher.call("POST", "/v1/pilots", body)
        self.id = str(reply["pilot"]["id"])
        # Its own credential, scoped to it: the launch credential may only register
        self.client = ApiClient(url, reply["token"])
        self.path = f"/v1/pilots/{urllib.parse.quote(self.id, safe='')}"

    def run(self, n: int) -> list[dict[str, Any]]:
        """Acquire up to `n` jobs, heartbeat holding them, report them running, then finished
        (payloads that ran past the pilot's report flush); return the jobs acquired."""
        acquired = self.client.call("POST", f"{self.path}/acquire", {"n": n})
        jobs: list[dict[str, Any]] = acquired["jobs"]
        beat = self.client.call("POST", f"{self.path}/heartbeat", {"jobs": [j["id"] for j in jobs]})
        assert beat["commands"] == [] and not beat["drain"], beat
        for status, exit_code in (("running", None), ("finished", 0)):
            reports = [
                {"job_id": j["id"], "attempt": j["attempt"], "status": status,
                 "exit_code": exit_code, "error_code": None, "error_diag": "", "log": None}
                for j in jobs
            ]  # fmt: skip
            reply = self.client.call("POST", f"{self.path}/update", {"reports": reports})
            refused = [r for r in reply["results"] if not r["accepted"]]
            assert refused == [], refused
        return jobs

    def end(self) -> None:
        self.client.call("POST", f"{self.path}/end", {"status": "finished", "reason": "idle"})


def _rounds_until_started(world: World, small: str) -> tuple[int, list[dict[str, int]]]:
    """Dispatch rounds (every pilot acquires, runs and finishes its jobs) until all of
    `small`'s jobs started; also how many jobs of each owner each acquire took."""
    pilots = [Pilot(world.system.url, world.launch_token) for _ in range(PILOTS)]
    acquires: list[dict[str, int]] = []
    for round_no in range(1, MAX_ROUNDS + 1):
        for pilot in pilots:
            owners = Counter(j["owner"] for j in pilot.run(PER_ACQUIRE))
            acquires.append(dict(owners))
        if sum(a.get(small, 0) for a in acquires) == SMALL:
            for pilot in pilots:
                pilot.end()
            return round_no, acquires
    raise AssertionError(f"{small}'s jobs did not all start: {acquires}")


def _submit_and_wait_split(api: ApiClient, name: str, n_jobs: int) -> dict[str, Any]:
    task: dict[str, Any] = api.call(
        "POST", "/v1/tasks", {"name": name, "command": ["true"], "n_jobs": n_jobs}
    )

    def split() -> dict[str, Any] | None:
        now: dict[str, Any] = api.call("GET", f"/v1/tasks/{task['id']}")
        return now if now["job_counts"].get("activated") == n_jobs else None

    return dict(wait_until(split, timeout=30, what=f"task {name} split into {n_jobs} jobs"))


def test_ten_jobs_are_not_starved_by_two_thousand_over_http(world: World) -> None:
    alice, bob = world.clients["alice"], world.clients["bob"]
    # Given alice's 2,000 queued jobs, submitted with her token and split first (so older),
    # and then bob's 10 on the same queue, each task owned by the user whose token sent it
    flood = _submit_and_wait_split(alice, "flood", BIG)
    few = _submit_and_wait_split(bob, "few", SMALL)
    assert (flood["owner"], few["owner"]) == ("alice", "bob")
    assert flood["spec"]["queue"] == few["spec"]["queue"] == "local"

    queue = {q["name"]: q for q in bob.call("GET", "/v1/queues")["queues"]}["local"]
    assert queue["activated"] == BIG + SMALL

    # When two pilots acquire 64 jobs each, in rounds, over HTTP
    rounds, acquires = _rounds_until_started(world, "bob")

    # Then all of bob's jobs start in the first round (without fair share: after ~16 rounds):
    # the first acquire already takes all 10, and alice's jobs fill the rest
    assert rounds == 1, acquires
    assert acquires == [{"alice": PER_ACQUIRE - SMALL, "bob": SMALL}, {"alice": PER_ACQUIRE}]
    queue = {q["name"]: q for q in bob.call("GET", "/v1/queues")["queues"]}["local"]
    assert queue["activated"] == BIG + SMALL - PILOTS * PER_ACQUIRE
    # And every job carries its task's owner, and bob's task ends done
    for api, task, owner in ((alice, flood, "alice"), (bob, few, "bob")):
        jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"limit": 100_000})["jobs"]
        assert {j["owner"] for j in jobs} == {owner}
    wait_until(
        lambda: bob.call("GET", f"/v1/tasks/{few['id']}")["status"] == "done",
        what="bob's task to be done",
    )
    # And alice's jobs still went by priority then age: the first ones she got were her first
    first = alice.call("GET", f"/v1/tasks/{flood['id']}/jobs", params={"limit": 20})["jobs"]
    assert [j["index"] for j in first] == list(range(20))
    assert all(j["status"] == "finished" for j in first), first
    assert bob.call("GET", f"/v1/tasks/{flood['id']}")["status"] == "running"
