"""One launcher for all queues: each queue's pilots go to the launcher its definition names."""

from __future__ import annotations

from collections.abc import Callable

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
