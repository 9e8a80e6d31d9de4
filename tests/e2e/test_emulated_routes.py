"""End to end on the emulators, through the gateway as pilots and users reach the deployed
functions: stage-out (PUT outputs), `skypanda drain`, `GET /v1/pilot.pyz`; and a lost Eventarc
delivery of a job's end, sent again by the sweep, so that its task still ends."""

from __future__ import annotations

import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from skypanda.domain.jobflow import output_key
from skypanda.pilot.client import ApiClient
from skypanda.runtime.emulated import EmulatedCloud
from skypanda.runtime.emulators import Emulator
from tests.e2e.conftest import Gate, cli, emulated_cloud, wait_until


def _ended(api: ApiClient, task_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        task: dict[str, Any] = api.call("GET", f"/v1/tasks/{task_id}")
        return task if task["status"] in ("done", "failed", "aborted", "finished") else None

    return wait_until(ended, timeout, f"task {task_id} to end")  # type: ignore[no-any-return]


def test_outputs_drain_and_the_pilot_zipapp_go_through_the_gateway(
    cloud: EmulatedCloud, tmp_path: Path
) -> None:
    api = ApiClient(cloud.url, cloud.token)
    # Given a job that writes an output file: stage-out PUTs it through the gateway
    write = ["sh", "-c", "echo out > result.txt"]
    spec = {"name": "out", "command": write, "n_jobs": 1, "outputs": ["*.txt"]}
    task = api.call("POST", "/v1/tasks", spec)
    assert _ended(api, task["id"])["status"] == "done"
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
    # Then the output is in Cloud Storage, listed on the job
    (out,) = job["outputs"]
    assert out["name"] == "result.txt" and out["uri"].startswith("gs://")
    assert cloud.svc.blobs.read(output_key(job["id"], 1, "result.txt")) == b"out\n"

    # Given a pilot running a job held by a gate
    gate = Gate(tmp_path / "gate")
    held = api.call("POST", "/v1/tasks", {"name": "held", "command": gate.command(), "n_jobs": 1})
    wait_until(gate.started, 120, "the held payload to start")
    (running,) = api.call("GET", f"/v1/tasks/{held['id']}/jobs")["jobs"]
    pilot_id = running["pilot_id"]
    # When an operator drains it with the CLI (POST /v1/pilots/ID/drain through the gateway)
    drained = cli(cloud, "drain", pilot_id)
    # Then the drain is accepted and recorded on the pilot
    assert drained.returncode == 0, drained.stderr
    pilots = api.call("GET", "/v1/pilots")["pilots"]
    assert next(p for p in pilots if p["id"] == pilot_id)["drain"] is True
    gate.release()
    assert _ended(api, held["id"])["status"] == "done"

    # And the pilot zipapp downloads through the gateway
    auth = {"Authorization": f"Bearer {cloud.token}"}
    request = urllib.request.Request(f"{cloud.url}/v1/pilot.pyz", headers=auth)
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        (tmp_path / "pilot.pyz").write_bytes(response.read())
    assert "__main__.py" in zipfile.ZipFile(tmp_path / "pilot.pyz").namelist()


def test_a_lost_delivery_of_a_jobs_end_is_sent_again_and_the_task_ends(
    tmp_path: Path,
    firestore_emulator: Emulator,
    pubsub_emulator: Emulator,
    storage_emulator: Emulator,
) -> None:
    # Given Eventarc loses the first job.ended it should deliver, and the sweep sends again
    # what is not handled 2 s after it was sent
    lost: list[str] = []

    def drop(doc_id: str, fields: dict[str, Any]) -> bool:
        if fields.get("type") == "dev.skypanda.job.ended" and not lost:
            lost.append(doc_id)
            return True
        return False

    cloud: EmulatedCloud = emulated_cloud(
        tmp_path / "home", resend_lost_after_s=2.0, drop_delivery=drop
    )
    try:
        api = ApiClient(cloud.url, cloud.token)
        # When a task of three jobs runs
        task = api.call("POST", "/v1/tasks", {"name": "t", "command": ["true"], "n_jobs": 3})
        # Then one job's end was lost, yet the task ends done: its end was sent again on
        # Pub/Sub to the release function, which marked it handled
        assert _ended(api, task["id"])["status"] == "done"
        assert len(lost) == 1 and cloud.bridge is not None and cloud.bridge.dropped == 1
        doc = cloud.firestore.collection(cloud.store.collection("events")).document(lost[0])
        # (the sweep records its send after publishing: the delivery may be marked first)
        stored = wait_until(lambda: (d := doc.get().to_dict()) and d["delivered"]
                            and d["tries"] >= 2 and d, 60,
                            "the lost event sent again, then marked handled")  # fmt: skip
        assert stored["released"] is True  # sent again without the in-request flag
        assert stored["expire_at"] is not None  # the TTL policy's field, a Timestamp
    finally:
        cloud.stop()
