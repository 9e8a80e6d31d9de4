"""One launcher for all queues: each queue's pilots go to the launcher its definition names."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Job, Queue
from skypanda.ports import LaunchedPilot
from skypanda.runtime.launchers import QueueLaunchers


class Recording:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.launched: list[str] = []
        self.stopped: list[str] = []
        self.forgotten: list[str] = []

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        self.launched.append(pilot_id)
        return f"{self.kind}:{pilot_id}"

    def list(self) -> list[LaunchedPilot]:
        return [
            LaunchedPilot(pilot_id=p, ref=f"{self.kind}:{p}", alive=True) for p in self.launched
        ]

    def stop(self, pilot_id: str) -> None:
        self.stopped.append(pilot_id)

    def forget(self, pilot_id: str) -> None:
        self.forgotten.append(pilot_id)


def test_each_queue_goes_to_its_kind_of_launcher_made_once() -> None:
    made: list[str] = []
    local, gke = Recording("local"), Recording("gke")

    def factory(r: Recording) -> Callable[[Queue], Recording]:
        def make(queue: Queue) -> Recording:
            made.append(r.kind)
            return r

        return make

    launchers = QueueLaunchers({"local": factory(local), "gke": factory(gke)})
    q_local = Queue(name="a")
    q_gke = Queue(name="b", launcher={"kind": "gke", "image": "img"})

    assert launchers.launch(q_local, "p1") == "local:p1"
    assert launchers.launch(q_gke, "p2") == "gke:p2"
    assert launchers.launch(q_gke, "p3") == "gke:p3"
    assert made == ["local", "gke"]  # each launcher made once, when first needed
    assert {s.ref for s in launchers.list()} == {"local:p1", "gke:p2", "gke:p3"}
    launchers.stop("p2")
    launchers.forget("p1")
    assert gke.stopped == ["p2"] and local.forgotten == ["p1"]


def test_a_queue_whose_launcher_is_not_available_here_is_named() -> None:
    launchers = QueueLaunchers({"local": lambda q: Recording("local")})
    cloudrun = {
        "kind": "cloudrun", "project": "my-project", "region": "europe-west1",
        "job": "pilots", "image": "i",
    }  # fmt: skip
    queue = Queue(name="cr", launcher=cloudrun)
    with pytest.raises(InvalidInput, match="queue cr: no cloudrun launcher here"):
        launchers.launch(queue, "p1")


def test_a_pilot_this_process_did_not_start_is_asked_of_every_launcher_made() -> None:
    # After a restart, the sweep retires pilots an earlier server launched: each launcher made
    # is asked to stop it (each leaves alone what is not its own)
    local, gke = Recording("local"), Recording("gke")
    launchers = QueueLaunchers({"local": lambda q: local, "gke": lambda q: gke})
    launchers.launch(Queue(name="a"), "p1")
    launchers.stop("p-from-before")
    assert local.stopped == ["p-from-before"] and gke.stopped == []


def test_the_local_launcher_kills_the_payloads_a_pilot_of_an_earlier_server_left(
    tmp_path: Path,
) -> None:
    from skypanda.adapters.local.launcher import ProcessLauncher
    from skypanda.wire.groups import GROUPS_DIR

    # Given a payload in its own process group, recorded by a pilot this launcher never started
    payload = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        groups = tmp_path / "work" / "p-old" / GROUPS_DIR
        groups.mkdir(parents=True)
        (groups / str(payload.pid)).write_text("")
        launcher = ProcessLauncher(
            server_url="http://127.0.0.1:1", credential_for=lambda p: "x", home=tmp_path
        )
        # When it is asked to stop that pilot, Then the payload is killed
        launcher.stop("p-old")
        assert payload.wait(timeout=30) != 0
    finally:
        if payload.poll() is None:
            payload.kill()


def test_a_launcher_at_hand_is_asked_before_anything_is_launched() -> None:
    local = Recording("local")
    launchers = QueueLaunchers({"local": lambda q: local}, {"local": local})
    launchers.stop("p-from-before")
    assert local.stopped == ["p-from-before"]


def test_prepared_launchers_list_stop_and_forget_pilots_an_earlier_process_launched() -> None:
    # Given a Cloud Run launcher that already runs pilot p9 (launched before a cold start),
    # and a queue whose factory fails
    earlier = Recording("cloudrun")
    earlier.launched.append("p9")

    def broken(queue: Queue) -> Recording:
        raise RuntimeError("no cluster")

    launchers = QueueLaunchers({"cloudrun": lambda q: earlier, "gke": broken})
    spec = {"kind": "cloudrun", "project": "my-proj-1", "region": "europe-west10",
            "job": "pilots", "image": "img"}  # fmt: skip
    queues = [
        Queue(name="a", launcher=spec),
        Queue(name="b", launcher={"kind": "gke", "image": "i"}),
    ]
    # When a new process prepares its queues' launchers, before launching anything
    assert launchers.list() == []
    launchers.prepare(queues)
    # Then it sees p9, can stop it and forget it; the broken queue did not stop the others
    assert [s.pilot_id for s in launchers.list()] == ["p9"]
    launchers.stop("p9")
    launchers.forget("p9")
    assert (earlier.stopped, earlier.forgotten) == (["p9"], ["p9"])
