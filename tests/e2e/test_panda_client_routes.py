"""panda-client's routes over HTTP on the embedded system, with real skypanda pilots: the
requests panda-client 2.2.0 sends (`../shared/reference/panda-protocol.md`, "Client") made
with plain HTTP, and the answers it reads, in PanDA's envelope. (The real panda-client
against them is `test_panda_client.py`.)"""

from __future__ import annotations

import json
import shlex
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skypanda.api.panda.mapping import panda_id
from skypanda.domain.identity import Role
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, fast_queue, wait_until
from tests.support import tar_archive


class Panda:
    """What panda-client sends: JSON POSTs and GETs under /api/v1 with `Authorization:
    Bearer` and `Origin: <vo>` (PANDA_AUTH=oidc)."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url, self.token = url, token

    def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
        query: dict[str, Any] | None = None, content_type: str = "application/json",
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {"Accept": "application/json", "Origin": "skypanda"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            headers["Content-Type"] = content_type
        url = f"{self.url}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        req = urllib.request.Request(url, data, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read(), object_hook=_datetimes)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """The `data` of a successful answer (HTTP 200, success true)."""
        status, reply = self.call(method, path, body, **kw)
        assert status == 200 and reply["success"] is True, (path, status, reply)
        return reply["data"]

    def refused(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        """A refusal: HTTP 200 (what the client shows), success false, and a message."""
        status, reply = self.call(method, path, body, **kw)
        assert status == 200 and reply["success"] is False and reply["message"], (path, reply)
        assert set(reply) == {"success", "message", "data"}
        return dict(reply)

    def submit(self, params: dict[str, Any], parent: int | None = None) -> int:
        status, reply = self.call("POST", "task/submit",
                                  {"task_parameters": params, "parent_tid": parent})  # fmt: skip
        assert status == 200 and reply["success"] is True, reply
        number = int(reply["message"].split("jediTaskID=")[1].split()[0])  # as prun reads it
        assert reply["data"] == number
        return number

    def status(self, task: int) -> str:
        return str(self.ok("GET", "task/get_status", query={"task_id": task}))


def _datetimes(obj: dict[str, Any]) -> Any:
    """The client's decoding: `{"__datetime__": iso}` is a datetime (kept as the iso text)."""
    return ("datetime", obj["__datetime__"]) if set(obj) == {"__datetime__"} else obj


def _task(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """Task parameters as `Client.insertTaskParams` takes them: `sh -c <script>`."""
    return {
        "taskName": name, "userName": "someone-else", "vo": "wlcg", "prodSourceLabel": "user",
        "transPath": "sh", "site": None, "noInput": True, "uniqueTaskName": True,
        "jobParameters": [{"type": "constant", "value": "-c " + shlex.quote(script)}],
        "log": {"type": "template", "param_type": "log", "dataset": "x.log/", "value": "l"},
        **extra,
    }  # fmt: skip


def _system(make_system: Callable[..., LocalSystem]) -> tuple[LocalSystem, Panda, Panda]:
    system = make_system(fast_queue())
    alice = Panda(system.url, system.users.add("alice", Role.USER))
    bob = Panda(system.url, system.users.add("bob", Role.USER))
    return system, alice, bob


def _done(panda: Panda, task: int, want: str = "done") -> None:
    wait_until(lambda: panda.status(task) == want, what=f"task {task} {want}")


def test_a_task_submitted_as_prun_does_runs_and_reads_back_as_pbook_shows_it(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given alice, and the task parameters prun builds for
    # `prun --exec "echo %RNDM:10 > out.txt" --nJobs 3 --outputs out.txt` (runGen's)
    system, alice, bob = _system(make_system)
    exec_pieces = [
        {"type": "constant", "value": '-p "', "padding": False},
        {"type": "constant", "value": "echo%20", "padding": False},
        {"type": "template", "value": "${SEQNUMBER}", "param_type": "pseudo_input",
         "dataset": "seq_number", "offset": 10, "padding": False},
        {"type": "constant", "value": "%20%3E%20out.txt", "padding": False},
        {"type": "constant", "value": '"'},
    ]  # fmt: skip
    params = {
        "taskName": "user.alice.test1/", "uniqueTaskName": True, "vo": "atlas",
        "architecture": None, "transUses": "", "transHome": None,
        "processingType": "panda-client-2.2.0-jedi-run", "prodSourceLabel": "user",
        "site": None, "excludedSite": [], "includedSite": None, "nEvents": 3,
        "nEventsPerJob": 1, "cliParams": "prun ...", "osInfo": "Linux", "nMaxFilesPerJob": 200,
        "respectSplitRule": True, "sourceURL": "http://127.0.0.1:1", "noInput": True,
        "log": {"dataset": "user.alice.test1.log/", "type": "template", "param_type": "log",
                "value": "user.alice.test1.log.$JEDITASKID.${SN}.log.tgz"},
        "jobParameters": [
            {"type": "constant", "value": '-j "" --sourceURL ${SURL}'},
            {"type": "constant", "value": "-r ."},
            {"type": "constant", "value": "__delimiter__", "hidden": True},
            {"type": "constant", "value": "-a jobO.0fae8674.tar.gz"},
            {"type": "template", "value": "user.alice.$JEDITASKID._${SN/P}.out.txt",
             "param_type": "output", "dataset": "user.alice.test1_out.txt/", "hidden": True},
            {"type": "constant", "value": "-o \"{'out.txt': 'user.alice.$JEDITASKID.out.txt'}\""},
            *exec_pieces,
        ],
    }  # fmt: skip

    # When she submits them; the jediTaskID is in the message, as prun reads it
    task = alice.submit(params)

    # Then the task runs its 3 jobs to done, each with its own %RNDM number and output
    _done(alice, task)
    sky_id = f"t{task:012x}"
    api = ApiClient(system.url, system.token)
    jobs = api.call("GET", f"/v1/tasks/{sky_id}/jobs", params={"offset": 0})["jobs"]
    ids = [panda_id(j["id"]) for j in sorted(jobs, key=lambda j: j["index"])]
    assert alice.ok("GET", "task/get_job_ids", query={"task_id": task}) == ids
    descs = alice.ok("POST", "job/get_description", {"job_ids": [*ids, 12345]})
    assert [d["jobParameters"] for d in descs[:3]] == [
        shlex.join(["-c", f"echo $(({11}+{i})) > out.txt"]) for i in range(3)
    ]
    assert all(j["outputs"] and j["outputs"][0]["name"] == "out.txt" for j in jobs)
    first = descs[0]
    assert first["PandaID"] == ids[0] and first["jediTaskID"] == task == first["taskID"]
    assert (first["jobStatus"], first["attemptNr"], first["transExitCode"]) == ("finished", 1, 0)
    assert first["prodUserName"] == "alice" and first["transformation"] == "sh"
    assert first["creationTime"][0] == "datetime" and first["endTime"][0] == "datetime"
    assert descs[3] is None  # an unknown PandaID, as PanDA answers it
    assert alice.ok("POST", "job/get_description_incl_archive", {"job_ids": ids[:1]}) == descs[:1]

    # and pbook show lists it as hers (not as bob's), done at 100 %
    query = {"n_tasks": 1000, "since": "2000-01-01 00:00:00"}
    (info,) = alice.ok("GET", "task/get_tasks_detailed_info_since", query=query)
    assert info["jediTaskID"] == task and info["taskName"] == "user.alice.test1"
    assert (info["status"], info["superStatus"], info["userName"]) == ("done", "done", "alice")
    assert (info["nFiles"], info["nFilesFinished"], info["pctFinished"]) == (3, 3, 100)
    assert info["creationDate"][0] == "datetime" and info["reqID"] is None
    assert bob.ok("GET", "task/get_tasks_detailed_info_since", query=query) == []
    by_id = {**query, "filters": json.dumps({"jediTaskID": str(task)})}
    assert [t["jediTaskID"] for t in alice.ok("GET", "task/get_tasks_detailed_info_since",
                                              query=by_id)] == [task]  # fmt: skip
    running = {**query, "filters": json.dumps({"superStatus": "running"})}
    assert alice.ok("GET", "task/get_tasks_detailed_info_since", query=running) == []
    # and prun's uniqueTaskName refuses the same name again (JEDI's code 2)
    assert alice.refused("POST", "task/submit", {"task_parameters": params})["data"] == 2
    # and a child task (parent_tid) of the done task starts at once and runs
    child = alice.submit(_task("child", "true"), parent=task)
    _done(alice, child)


def test_kill_finish_retry_act_on_ones_own_tasks_and_say_why_not_otherwise(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given alice's task whose one job runs until let go, and bob
    system, alice, bob = _system(make_system)
    gate = Gate(tmp_path / "gate")
    task = alice.submit(_task("held", gate.script(mark="x"), maxAttempt=1))
    wait_until(lambda: "x" in gate.started(), what="the payload to start")

    # When bob tries to kill, finish and retry it: refused (PanDA's 3, permission denied)
    for command in ("kill", "finish", "retry"):
        reply = bob.refused("POST", f"task/{command}", {"task_id": task})
        assert reply["data"] == 3 and "alice" in reply["message"], reply
    assert alice.status(task) == "running"
    # and unknown or malformed jediTaskIDs are refused as PanDA does (2, 101)
    assert alice.refused("POST", "task/kill", {"task_id": 99_999_999_999})["data"] == 2
    bad = alice.refused("POST", "task/kill", {"task_id": "abc"})
    assert bad["data"] == 101 and "task_id" in bad["message"]
    assert alice.refused("GET", "task/get_status", query={"task_id": 5})["data"] == 2

    # When alice kills it: aborted, written to the audit trail as her act; a second kill is
    # refused (4, not in a state for it)
    assert alice.ok("POST", "task/kill", {"task_id": task}) == 0
    trail = ApiClient(system.url, system.token).call("GET", "/v1/audit", params={"actor": "alice"})
    entries = [(e["action"], e["outcome"]) for e in trail["entries"]]
    assert entries[0] == ("panda_client.kill_task", "done"), entries
    assert ("panda_client.kill_task", "refused") in entries  # the unknown task's
    assert ("panda_client.submit_task", "done") in entries
    _done(alice, task, "aborted")
    assert alice.refused("POST", "task/kill", {"task_id": task})["data"] == 4
    assert alice.refused("POST", "task/finish", {"task_id": task, "soft": True})["data"] == 4

    # and its job is killed by its pilot: cancelled, with PanDA's 1144 or skypanda's reason
    job = panda_id(f"t{task:012x}-000000000000")
    desc = wait_until(lambda: (d := alice.ok("POST", "job/get_description", {"job_ids": [job]})[0])
                      ["jobStatus"] == "cancelled" and d, what="the job cancelled")  # fmt: skip
    assert desc["commandToPilot"] is None or desc["commandToPilot"] == "tobekilled"

    # When she retries it and lets the payload end: done, in a second attempt of the same job
    gate.release()
    assert alice.ok("POST", "task/retry", {"task_id": task}) == 0
    _done(alice, task)
    (desc,) = alice.ok("POST", "job/get_description", {"job_ids": [job]})
    assert (desc["jobStatus"], desc["attemptNr"], desc["PandaID"]) == ("finished", 2, job)

    # And a soft finish of a running task of hers is taken
    gate2 = Gate(tmp_path / "gate2")
    other = alice.submit(_task("held2", gate2.script(mark="y")))
    wait_until(lambda: "y" in gate2.started(), what="the second payload to start")
    assert alice.ok("POST", "task/finish", {"task_id": other, "soft": True}) == 0
    gate2.release()
    _done(alice, other)


def test_bad_requests_are_refused_in_the_envelope_naming_the_problem(
    make_system: Callable[..., LocalSystem],
) -> None:
    _, alice, _ = _system(make_system)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"dsForIN": "data18:some.dataset"}, "dsForIN"),
        ({"inputPreStaging": True}, "inputPreStaging"),
        ({"container_name": "docker://x"}, "container_name"),
        ({"colour": "red"}, "colour"),
        ({"site": "nowhere"}, "nowhere"),
        ({"ramCount": "lots"}, "ramCount"),
        ({"jobParameters": [{"type": "template", "param_type": "input", "dataset": "d",
                             "value": "-i ${IN}"}]}, "Rucio"),
    ]  # fmt: skip
    for extra, named in cases:
        reply = alice.refused("POST", "task/submit",
                              {"task_parameters": _task("bad", "true", **extra)})  # fmt: skip
        assert named in reply["message"] and reply["data"] == 4, (extra, reply)
    for body, named in [
        ({"task_parameters": _task("x", "true"), "priority": 3}, "priority"),
        ({"task_parameters": "not json"}, "task_parameters"),
        ({"task_parameters": _task("x", "true"), "parent_tid": "me"}, "parent_tid"),
        ({"task_parameters": _task("x", "true"), "parent_tid": 99_999_999_999}, "parent_tid"),
    ]:
        assert named in alice.refused("POST", "task/submit", body)["message"], body
    assert "JSON" in alice.refused("POST", "task/kill", raw=b"{not json")["message"]
    big = b'{"task_parameters": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    assert "8,388,608 bytes" in alice.refused("POST", "task/submit", raw=big)["message"]
    for bad in ("x", "²", "1" * 40, 1.5):
        reply = alice.refused("POST", "job/get_description", {"job_ids": [bad]})
        assert "job_ids" in reply["message"], reply
    assert "since" in alice.refused("GET", "task/get_tasks_detailed_info_since",
                                    query={"since": "yesterday"})["message"]  # fmt: skip
    assert "colour" in alice.refused("GET", "task/get_tasks_detailed_info_since",
                                     query={"filters": '{"colour": "red"}'})["message"]  # fmt: skip


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "skypandaboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
        f"\r\n--{boundary}--\r\n".encode())  # fmt: skip
    return body, f"multipart/form-data; boundary={boundary}"


def test_prun_sandbox_upload_takes_an_empty_one_and_refuses_files_naming_them(
    make_system: Callable[..., LocalSystem],
) -> None:
    _, alice, _ = _system(make_system)
    reply = alice.ok("POST", "file_server/validate_cache_file", {"file_size": 51, "checksum": 1})
    assert reply is None
    body, kind = _multipart("jobO.1.tar.gz", tar_archive({}))
    alice.ok("POST", "file_server/upload_cache_file", raw=body, content_type=kind)
    body, kind = _multipart("jobO.2.tar.gz", tar_archive({"analysis.py": b"print(1)"}))
    reply = alice.refused("POST", "file_server/upload_cache_file", raw=body, content_type=kind)
    assert "analysis.py" in reply["message"]


@pytest.mark.parametrize("token", [None, "forged"])
def test_without_a_valid_credential_every_client_route_is_the_usual_401(
    make_system: Callable[..., LocalSystem], token: str | None
) -> None:
    system = make_system(fast_queue(max_pilots=0))
    panda = Panda(system.url, token)
    routes = [("GET", "system/is_alive"), ("POST", "task/submit"), ("GET", "task/get_status"),
              ("GET", "task/get_job_ids"), ("POST", "task/kill"), ("POST", "task/finish"),
              ("POST", "task/retry"),
              ("POST", "job/get_description"), ("POST", "job/get_description_incl_archive"),
              ("GET", "task/get_tasks_detailed_info_since"),
              ("POST", "file_server/validate_cache_file"),
              ("POST", "file_server/upload_cache_file")]  # fmt: skip
    for method, path in routes:
        status, body = panda.call(method, path, {} if method == "POST" else None)
        assert status == 401 and body["error"] == "Unauthorized", (path, body)
    assert Panda(system.url, system.token).ok("GET", "system/is_alive")["server"] == "skypanda"
