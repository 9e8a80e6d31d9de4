"""The PanDA pilot facade over HTTP on the embedded system: a client speaking the PanDA pilot's
wire format (`../shared/reference/panda-protocol.md`) runs a skypanda task's job, is told
`tobekilled` when skypanda kills it, and is refused without a credential; the same with the
newer pilots' `/api/v1/pilot` JSON; a final update's log tarball, staged out to skypanda's DDM
directory, becomes the job's log. (The real PanDA pilot: `test_panda_pilot.py`.)"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skypanda.api.panda import mapping
from skypanda.domain.identity import Role
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

    def v1(self, path: str, body: Any, *, raw: bytes | None = None) -> tuple[int, Any]:
        """A newer pilot's call: gzipped JSON saying `Content-Encoding: gzip`."""
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else gzip.compress(json.dumps(body).encode())
        req = urllib.request.Request(self.url + "/api/v1/pilot/" + path, data, headers)
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
    # and a bulk getJob (nJobs) is answered in bulk
    api.call("POST", "/v1/tasks", {"name": "b", "command": ["b.sh"], "n_jobs": 2})
    bulk = wait_until(lambda: (r := pilot.call("POST", "/server/panda/getJob", {
        "siteName": "local", "node": pilot.node, "nJobs": "5"})[1]).get("jobs") and r,
        what="a bulk of jobs")  # fmt: skip
    assert bulk["StatusCode"] == 0 and 1 <= len(bulk["jobs"]) <= 2


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
        ("POST", "/api/v1/pilot/acquire_jobs"),
        ("POST", "/api/v1/pilot/update_job"),
        ("POST", "/api/v1/pilot/update_jobs_bulk"),
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


# -- the newer pilots' /api/v1/pilot ----------------------------------------------------------


def _acquire_v1(pilot: PandaPilot, **extra: Any) -> dict[str, Any]:
    body = {"site_name": "local", "computing_element": "local", "prod_source_label": "managed",
            "disk_space": 100000, "memory": 2000, "node": pilot.node, **extra}  # fmt: skip

    def one() -> dict[str, Any] | None:
        status, reply = pilot.v1("acquire_jobs", body)
        assert status == 200, reply
        return dict(reply["data"]["jobs"][0]) if reply["success"] else None

    job: dict[str, Any] = wait_until(one, what="a job for the newer PanDA pilot")
    return job


def _update_v1(pilot: PandaPilot, job: dict[str, Any], status: str, **extra: Any) -> Any:
    body = {"job_id": job["PandaID"], "job_status": status, "site_name": "local",
            "node": pilot.node, "attempt_nr": job["attemptNr"], "pilot_id": "x|PR|3.12",
            "cpu_consumption_unit": "s", "core_count": 1, **extra}  # fmt: skip
    code, reply = pilot.v1("update_job", body)
    assert code == 200, reply
    return reply


def test_a_newer_panda_pilot_runs_one_job_and_is_told_to_kill_another_over_api_v1(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a skypanda task of two jobs, and a client speaking the newer pilots' /api/v1/pilot
    system, api = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    task = api.call("POST", "/v1/tasks", {"name": "v1", "command": ["run.sh", "x"], "n_jobs": 2})

    # When it acquires one job and reports it through to finished
    job = _acquire_v1(pilot)
    assert job["StatusCode"] == 0 and job["transformation"] == "run.sh"
    assert _update_v1(pilot, job, "starting") == {
        "success": True, "message": "", "data": {"StatusCode": 0, "command": "NULL"}}  # fmt: skip
    said = {"pilot_log": "v1 payload said hello\n", "end_time": "2026-01-01 00:00:00"}
    final = _update_v1(pilot, job, "finished", trans_exit_code=0, pilot_error_code=0, **said)

    # Then it finished in skypanda, with the pilot's log
    assert final["data"] == {"StatusCode": 0, "command": "NULL"}
    sky = {j["id"]: j for j in api.call("GET", f"/v1/tasks/{task['id']}/jobs",
                                           params={"offset": 0})["jobs"]}  # fmt: skip
    done = sky[job["jobName"]]
    assert done["status"] == "finished" and done["exit_code"] == 0
    assert "v1 payload said hello" in _log(system, done["id"])

    # And when skypanda kills the task while it runs the second, its next update says so
    second = _acquire_v1(pilot, n_jobs=5)  # (one left: n_jobs is at most)
    _update_v1(pilot, second, "running")
    api.call("POST", f"/v1/tasks/{task['id']}/kill")
    reply = wait_until(lambda: (r := _update_v1(pilot, second, "running"))["data"]["command"]
                       == "tobekilled" and r, what="tobekilled over api/v1")  # fmt: skip
    assert reply["success"] is True
    # and with no job left, acquire_jobs answers as panda-server does
    status, none = pilot.v1("acquire_jobs", {"site_name": "local", "node": pilot.node})
    assert (status, none) == (200, {"success": False, "message": "No jobs in PanDA",
                                    "data": None})  # fmt: skip


def test_bad_api_v1_requests_are_refused_naming_the_field(
    make_system: Callable[..., LocalSystem],
) -> None:
    system, _ = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    cases: list[tuple[str, Any, bytes | None, str]] = [
        ("acquire_jobs", {"site_name": "local", "siteName": "local"}, None, "siteName"),
        ("acquire_jobs", {"site_name": "local", "memory": "lots"}, None, "memory"),
        ("acquire_jobs", {"node": "wn1"}, None, "site_name"),
        ("update_job", {"job_id": 12, "job_status": "merging"}, None, "job_status"),
        ("update_job", {"job_id": "abc", "job_status": "running"}, None, "job_id"),
        ("update_job", None, b"\x1f\x8bnot gzip at all", "body"),  # a corrupt gzip
        ("update_job", None, gzip.compress(b"[1, 2]"), "body"),  # not an object
        ("update_job", None, gzip.compress(bytes(5 * 1024 * 1024)), "body"),  # a gzip bomb
        ("update_jobs_bulk", {"job_list": "x"}, None, "job_list"),
    ]
    for path, body, raw, field in cases:
        status, reply = pilot.v1(path, body, raw=raw)
        assert status == 400 and reply["success"] is False, (path, body, reply)
        assert reply["data"] == {"StatusCode": 50, "field": field}, reply
        assert reply["message"], reply
    # a job skypanda does not have: SC_Failed (30), as panda-server answers an update of one
    status, reply = pilot.v1("update_job", {"job_id": 12, "job_status": "holding"})
    assert status == 404 and reply["data"]["StatusCode"] == 30, reply
    # a user's token is not a pilot's: SC_Role (60), as panda-server answers a non-pilot
    user = PandaPilot(system.url, system.users.add("u1", Role.USER))
    status, reply = user.v1("acquire_jobs", {"site_name": "local"})
    assert status == 403 and reply["data"]["StatusCode"] == 60, reply
    # each update of a bulk is applied or refused on its own
    bulk = [{"job_id": 12, "job_status": "merging"}, {"job_id": 12, "job_status": "holding"}]
    status, reply = pilot.v1("update_jobs_bulk", {"job_list": bulk})
    assert status == 200 and reply["success"] is True
    assert [r["data"]["StatusCode"] for r in reply["data"]] == [50, 30]


def test_an_update_of_another_pilots_job_is_told_to_kill_it(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a job held by the PanDA pilot on node wn1
    system, api = _system(make_system)
    api.call("POST", "/v1/tasks", {"name": "o", "command": ["o.sh"], "n_jobs": 1})
    job = _next_job(PandaPilot(system.url, system.token, node="wn1"))

    # When a pilot on another node reports it, in either wire shape
    other = PandaPilot(system.url, system.token, node="wn2")
    legacy = other.update(job, "running")
    v1 = _update_v1(other, job, "running")

    # Then it is told to kill it, and the job stays the first pilot's
    assert legacy == {"StatusCode": 0, "command": "tobekilled"}
    assert v1["data"] == {"StatusCode": 0, "command": "tobekilled"}
    assert PandaPilot(system.url, system.token, node="wn1").update(job, "running") == {
        "StatusCode": 0, "command": "NULL"}  # fmt: skip


def _log(system: LocalSystem, job_id: str) -> str:
    headers = {"Authorization": f"Bearer {system.token}"}
    req = urllib.request.Request(f"{system.url}/v1/jobs/{job_id}/log", headers=headers)
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(r.read().decode())


def _tarball(stdout: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("tarball_PandaJob_1_local/payload.stdout")
        info.size = len(stdout)
        tar.addfile(info, io.BytesIO(stdout))
    return buf.getvalue()


def test_a_final_updates_log_tarball_in_the_ddm_directory_becomes_the_jobs_log(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given two jobs run by a PanDA pilot, whose log tarballs it staged out to the DDM
    # directory skypanda serves in ddmendpoints.json (the first where it belongs, the second
    # elsewhere, named by a surl that climbs out of that directory)
    system, api = _system(make_system)
    pilot = PandaPilot(system.url, system.token)
    _, eps = pilot.call("GET", "/cache/ddmendpoints.json")
    ddm = Path(eps["local_DISK"]["arprotocols"]["w"][0]["path"])
    assert ddm == system.opts.home / "panda-ddm"
    api.call("POST", "/v1/tasks", {"name": "l", "command": ["l.sh"], "n_jobs": 2})
    results = []
    for n in range(2):
        job = _next_job(pilot)
        lfn = job["logFile"]
        data = _tarball(f"payload {n} says hello\n".encode())
        path = ddm / (f"skypanda/aa/bb/{lfn}" if n else mapping.ddm_path(lfn))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        adler32, surl = f"{zlib.adler32(data):08x}", f"file://localhost{path}"
        meta = {"guid": job["logGUID"], "fsize": len(data), "adler32": adler32, "surl": surl}
        if n:
            meta["surl"] = f"file://localhost{ddm}/../{lfn}"
        # When its final update names the tarball
        pilot.update(job, "finished", transExitCode="0", xml=json.dumps({lfn: meta}))
        results.append(job["jobName"])

    # Then the first job's log holds its payload's output, and the second's says why not
    first, second = (_log(system, job_id) for job_id in results)
    assert first.startswith("payload 0 says hello\n[panda pilot] staged out"), first
    assert "payload 1" not in second and "was not read" in second, second
    assert "is not where skypanda's DDM endpoint puts it" in second, second
