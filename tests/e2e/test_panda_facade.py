"""The PanDA pilot facade over HTTP on the embedded system: a client speaking the PanDA pilot's
wire format (`../shared/reference/panda-protocol.md`) runs a skypanda task's job, is told
`tobekilled` when skypanda kills it, and is refused without a credential. (The real PanDA
pilot against it is a later step of issue 18.)"""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import fast_queue, wait_until


class PandaPilot:
    """What the PanDA pilot sends: form-encoded POSTs (pilot 3.7) or gzipped JSON without
    `Content-Encoding` (pilot 3.11), with `Authorization: Bearer`."""

    def __init__(self, url: str, token: str | None, node: str = "wn1") -> None:
        self.url, self.token, self.node = url, token, node

    def call(
        self, method: str, path: str, fields: dict[str, str] | None = None, *, gz: bool = False
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if fields is not None and gz:
            data = gzip.compress(json.dumps(fields).encode())
            headers["Content-Type"] = "application/json"
        elif fields is not None:
            data = urllib.parse.urlencode(fields).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get_job(self, queue: str = "local") -> dict[str, Any]:
        status, body = self.call("POST", "/server/panda/getJob", {
            "siteName": queue, "computingElement": queue, "prodSourceLabel": "managed",
            "diskSpace": "100000", "workingGroup": "", "cpu": "2400", "mem": "2000",
            "node": self.node, "allowOtherCountry": "False",
        })  # fmt: skip
        assert status == 200, body
        return dict(body)

    def update(self, job: dict[str, Any], state: str, **extra: str) -> dict[str, Any]:
        fields = {
            "jobId": str(job["PandaID"]), "state": state, "timestamp": "2026-01-01T00:00:00",
            "siteName": "local", "node": self.node, "attemptNr": str(job["attemptNr"]),
            "schedulerID": "unknown", "pilotID": "x|PR|3.7.0.36", "coreCount": "1",
            "cpuConsumptionUnit": "s", **extra,
        }  # fmt: skip
        status, body = self.call("POST", "/server/panda/updateJob", fields)
        assert status == 200, body
        return dict(body)


def _system(make_system: Callable[..., LocalSystem]) -> tuple[LocalSystem, ApiClient]:
    # No skypanda pilot on the queue: the PanDA client is the only one taking its jobs
    system = make_system(fast_queue(min_pilots=0, max_pilots=0))
    return system, ApiClient(system.url, system.token)


def _task(api: ApiClient, task_id: str) -> dict[str, Any]:
    return dict(api.call("GET", f"/v1/tasks/{task_id}"))


def _next_job(pilot: PandaPilot) -> dict[str, Any]:
    job: dict[str, Any] = wait_until(lambda: (j := pilot.get_job()).get("StatusCode") == 0 and j,
                      what="a job for the PanDA pilot")  # fmt: skip
    return job


def test_a_panda_pilot_runs_a_skypanda_job_to_finished(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a skypanda task of one job, and a client speaking the PanDA pilot's protocol
    system, api = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    task = api.call("POST", "/v1/tasks", {"name": "p", "command": ["run.sh", "x y"], "n_jobs": 1})

    # When it gets the job, reports it starting, running (twice: a heartbeat), finished
    job = _next_job(pilot)
    assert job["transformation"] == "run.sh" and job["jobPars"] == "'x y'"
    assert job["logFile"] in job["outFiles"] and job["attemptNr"] == 1
    assert pilot.update(job, "starting") == {"StatusCode": 0, "command": "NULL"}
    assert pilot.update(job, "running")["command"] == "NULL"
    assert pilot.update(job, "running")["command"] == "NULL"
    final = pilot.update(job, "finished", transExitCode="0", pilotErrorCode="0",
                         pilotLog="payload said hello\n")  # fmt: skip

    # Then the skypanda job finished with the pilot's log, and the task ends done
    assert final == {"StatusCode": 0, "command": "NULL"}
    wait_until(lambda: _task(api, task["id"])["status"] == "done", what="the task done")
    (sky,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"offset": 0})["jobs"]
    assert sky["status"] == "finished" and sky["exit_code"] == 0
    assert sky["pilot_id"].startswith("pp")
    headers = {"Authorization": f"Bearer {system.token}"}
    req = urllib.request.Request(f"{system.url}/v1/jobs/{sky['id']}/log", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        assert "payload said hello" in r.read().decode()
    # and there is no other job: the next getJob says so as PanDA does
    assert pilot.get_job() == {"StatusCode": 20}


def test_a_kill_from_skypanda_is_tobekilled_in_the_next_update(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a PanDA pilot running a skypanda job, sending gzipped JSON as pilot 3.11 does
    system, api = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    task = api.call("POST", "/v1/tasks", {"name": "k", "command": ["sleep.sh", "600"], "n_jobs": 1})
    job = _next_job(pilot)
    fields = {"jobId": str(job["PandaID"]), "state": "running", "node": pilot.node,
              "attemptNr": str(job["attemptNr"])}  # fmt: skip
    status, body = pilot.call("POST", "/server/panda/updateJob", fields, gz=True)
    assert (status, body) == (200, {"StatusCode": 0, "command": "NULL"})

    # When the user kills the task in skypanda
    api.call("POST", f"/v1/tasks/{task['id']}/kill")

    # Then the pilot's next update is told to kill it; its report of the kill (1144) ends
    # the job cancelled and the task aborted
    reply = wait_until(lambda: (r := pilot.update(job, "running"))["command"] == "tobekilled"
                       and r, what="tobekilled")  # fmt: skip
    assert reply["StatusCode"] == 0
    pilot.update(job, "failed", pilotErrorCode="1144", pilotErrorDiag="killed by server",
                 transExitCode="0")  # fmt: skip
    wait_until(lambda: _task(api, task["id"])["status"] == "aborted", what="task aborted")
    (sky,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"offset": 0})["jobs"]
    assert sky["status"] == "cancelled" and sky["error_code"] == 1144


def test_the_pilots_queue_config_and_storage_come_from_skypandas_queues(
    make_system: Callable[..., LocalSystem],
) -> None:
    system, _ = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    status, conf = pilot.call("GET", "/cache/schedconfig/local.all.json")
    assert status == 200 and conf["state"] == "ACTIVE" and conf["timefloor"] == 0
    status, eps = pilot.call("GET", "/cache/ddmendpoints.json")
    assert status == 200 and eps["local_DISK"]["state"] == "ACTIVE"
    status, body = pilot.call("GET", "/cache/schedconfig/nowhere.all.json")
    assert status == 404 and "nowhere" in body["errorDialog"]
    status, body = pilot.call("GET", "/cache/schedconfig/local.json")
    assert status == 400 and body["field"] == "file"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/server/panda/getJob"),
        ("POST", "/server/panda/updateJob"),
        ("GET", "/cache/schedconfig/local.all.json"),
        ("GET", "/cache/ddmendpoints.json"),
    ],
)
def test_without_a_credential_every_panda_route_is_401(
    make_system: Callable[..., LocalSystem], method: str, path: str
) -> None:
    system, _ = _system(make_system)
    fields = {"siteName": "local"} if method == "POST" else None
    for token in (None, "forged"):
        status, body = PandaPilot(system.url, token).call(method, path, fields)
        assert status == 401, body


def test_bad_panda_requests_are_400_naming_the_field(
    make_system: Callable[..., LocalSystem],
) -> None:
    system, _ = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    cases = [
        ("/server/panda/getJob", {"siteName": "local", "mem": "lots"}, "mem"),
        ("/server/panda/getJob", {"siteName": "local", "colour": "red"}, "colour"),
        ("/server/panda/getJob", {"node": "wn1"}, "siteName"),
        ("/server/panda/updateJob", {"jobId": "12", "state": "merging"}, "state"),
        ("/server/panda/updateJob", {"jobId": "abc", "state": "running"}, "jobId"),
    ]
    for path, fields, field in cases:
        status, body = pilot.call("POST", path, fields)
        assert status == 400 and body["StatusCode"] == 50, (fields, body)
        assert body["field"] == field and field in body["errorDialog"], body
    status, body = pilot.call("POST", "/server/panda/getJob", {"siteName": "nowhere"})
    assert status == 422 and "nowhere" in body["errorDialog"], body
    status, body = pilot.call("POST", "/server/panda/updateJob", {"x": "1"}, gz=True)
    assert status == 400 and body["field"] == "x"


def test_after_its_pilot_ended_the_next_contact_from_the_node_is_a_new_pilot(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a PanDA pilot that ran a job on node wn1, whose skypanda pilot then ended
    system, api = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    first = api.call("POST", "/v1/tasks", {"name": "a", "command": ["a.sh"], "n_jobs": 1})
    job = _next_job(pilot)
    pilot.update(job, "finished", transExitCode="0")
    (done,) = api.call("GET", f"/v1/tasks/{first['id']}/jobs", params={"offset": 0})["jobs"]
    api.call("POST", f"/v1/pilots/{done['pilot_id']}/end", {"status": "finished"})

    # When a pilot on the same node asks for work again
    second = api.call("POST", "/v1/tasks", {"name": "b", "command": ["b.sh"], "n_jobs": 1})
    job = _next_job(pilot)

    # Then a new skypanda pilot (the next generation of the node's key) holds the job
    (held,) = api.call("GET", f"/v1/tasks/{second['id']}/jobs", params={"offset": 0})["jobs"]
    assert done["pilot_id"].endswith("-1") and held["pilot_id"].endswith("-2")
    assert held["pilot_id"].removesuffix("-2") == done["pilot_id"].removesuffix("-1")
    assert pilot.update(job, "running")["command"] == "NULL"


def test_a_job_a_panda_pilot_cannot_run_fails_at_once_saying_why(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a task whose jobs need environment variables (PanDA's job description has none)
    system, api = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    spec = {"name": "e", "command": ["e.sh"], "n_jobs": 1, "env": {"A": "1"}, "max_attempts": 1}
    task = api.call("POST", "/v1/tasks", spec)

    # When a PanDA pilot is handed its job
    def refused() -> dict[str, Any] | None:
        status, body = pilot.call("POST", "/server/panda/getJob", {"siteName": "local"})
        return dict(body) if status == 400 else None

    body = wait_until(refused, what="the job refused")

    # Then it is refused naming the field, and the job fails now (not lost as `sent`)
    assert body["StatusCode"] == 50 and body["field"] == "env" and "env" in body["errorDialog"]
    (job,) = api.call("GET", f"/v1/tasks/{task['id']}/jobs", params={"offset": 0})["jobs"]
    assert job["status"] == "failed" and job["error_code"] == 9001
    assert "env" in job["error_diag"]
