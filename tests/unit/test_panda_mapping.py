"""The PanDA facade's mapping: each PanDA field to skypanda's and back, and a clear error that
names every unknown or unsupported field or value."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from skypanda.api.panda import mapping, pilots
from skypanda.api.panda.mapping import PandaInputError
from skypanda.domain.errors import NotFound
from skypanda.domain.ids import job_id
from skypanda.domain.models import Job, Pilot, Queue, Resources
from skypanda.domain.states import JobStatus, PilotStatus
from skypanda.wire.codes import ErrorCode

TASK = "t0123456789ab"


def _job(**over: Any) -> Job:
    fields: dict[str, Any] = {
        "id": job_id(TASK, 7), "task_id": TASK, "index": 7, "status": JobStatus.SENT,
        "attempt": 2, "queue": "local", "priority": 5, "command": ["run.sh", "a b", "--n=1"],
        "inputs": ["gs://bucket/in/x.root", "/data/y.txt"], "created_at": 0.0,
        "updated_at": 0.0, "resources": Resources(memory_mb=3000, cores=4, walltime_s=600),
    }  # fmt: skip
    fields.update(over)
    return Job(**fields)


def _field(e: pytest.ExceptionInfo[PandaInputError]) -> Any:
    return e.value.context["field"]


# -- ids -----------------------------------------------------------------------------------


def test_a_panda_id_is_the_job_ids_hex_digits_and_decodes_back() -> None:
    jid = job_id(TASK, 7)
    pid = mapping.panda_id(jid)
    assert pid == int(jid[1:].replace("-", ""), 16)
    assert mapping.job_id_of(str(pid)) == jid
    assert mapping.job_id_of(str(mapping.panda_id(job_id("t000000000000", 0)))) == job_id(
        "t000000000000", 0
    )


@pytest.mark.parametrize("bad", ["abc", "-5", "1.5", "", str(1 << 96), "²", "١٢"])
def test_a_job_id_that_skypanda_did_not_issue_is_refused_naming_job_id(bad: str) -> None:
    with pytest.raises(PandaInputError, match="jobId") as e:
        mapping.job_id_of(bad)
    assert _field(e) == "jobId"


def test_a_job_whose_id_is_not_a_split_jobs_has_no_panda_id() -> None:
    with pytest.raises(PandaInputError, match="PandaID"):
        mapping.panda_id("my-job")


def test_the_task_number_is_the_task_ids_hex() -> None:
    assert mapping.task_number(TASK) == int("0123456789ab", 16)
    assert mapping.task_number("custom") == 0


# -- the job description -------------------------------------------------------------------


def test_each_field_of_the_job_description() -> None:
    job = _job()
    d = mapping.describe_job(job, "ptest")
    assert d["StatusCode"] == 0
    assert d["PandaID"] == mapping.panda_id(job.id)
    assert d["jobName"] == job.id
    assert d["taskID"] == d["jediTaskID"] == mapping.task_number(TASK)
    assert d["attemptNr"] == 2
    assert d["prodSourceLabel"] == "ptest"
    assert d["transformation"] == "run.sh"
    assert d["jobPars"] == "'a b' --n=1"
    assert d["inFiles"] == "x.root,y.txt"
    assert d["logFile"] == f"{job.id}.2.log.tgz"
    assert d["outFiles"] == d["logFile"]  # the pilot uploads the log as an output
    assert d["logGUID"] == mapping.describe_job(job, "ptest")["logGUID"]  # stable per attempt
    assert d["logGUID"] != mapping.describe_job(_job(attempt=3), "ptest")["logGUID"]
    assert d["scopeLog"] == "skypanda"
    assert d["ddmEndPointOut"] == "local_DISK"
    assert (d["coreCount"], d["minRamCount"], d["maxWalltime"]) == (4, 3000, 600)
    assert d["currentPriority"] == 5
    json.dumps(d)  # all of it goes on the wire


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"env": {"A": "1"}}, "env"),
        ({"output_patterns": ["*.root"]}, "outputs"),
        ({"stage_in": True}, "stage_in"),
    ],
)
def test_a_job_the_panda_pilot_cannot_run_is_refused_naming_the_field(
    over: dict[str, Any], field: str
) -> None:
    with pytest.raises(PandaInputError, match=field) as e:
        mapping.describe_job(_job(**over), "managed")
    assert _field(e) == field


def test_the_schedconfig_has_what_the_pilot_reads() -> None:
    q = Queue(name="gpu", pilot_resources=Resources(memory_mb=8000, cores=8, walltime_s=7200))
    c = mapping.schedconfig(q)
    assert c["state"] == "ACTIVE" and c["status"] == "online"
    assert (c["maxrss"], c["corecount"], c["maxtime"], c["timefloor"]) == (8000, 8, 7200, 0)
    assert c["copytools"] == {"mv": {}}
    assert c["acopytools"] == {"pl": ["mv"], "pw": ["mv"], "pr": ["mv"]}
    assert c["astorages"] == {"pl": ["gpu_DISK"], "pw": ["gpu_DISK"]}
    assert c["maxwdir"] > 0
    offline = mapping.schedconfig(Queue(name="gpu", status="offline"))
    assert offline["state"] == "OFFLINE"
    # pilot 3.7 reads the site from atlas_site (it fails on a None site without it)
    assert (c["atlas_site"], c["panda_resource"]) == ("gpu", "gpu")


def test_the_schedconfig_file_names_its_queue() -> None:
    assert mapping.schedconfig_queue("gpu.all.json") == "gpu"
    for bad in ("gpu.json", ".all.json", "gpu"):
        with pytest.raises(PandaInputError, match=r"<queue>\.all\.json") as e:
            mapping.schedconfig_queue(bad)
        assert _field(e) == "file"


def test_the_ddm_endpoints_are_one_disk_per_queue() -> None:
    eps = mapping.ddm_endpoints([Queue(name="a"), Queue(name="b")], "/x")
    assert set(eps) == {"a_DISK", "b_DISK"}
    a = eps["a_DISK"]
    assert (a["state"], a["site"], a["is_deterministic"]) == ("ACTIVE", "a", True)
    assert a["arprotocols"]["w"][0] == {
        "endpoint": "file://localhost", "path": "/x", "flavour": "POSIX"
    }  # fmt: skip
    # pilot 3.7 reads the id as an integer and resolves a log's stage-out by write_lan/write_wan
    assert [eps[n]["id"] for n in ("a_DISK", "b_DISK")] == [1, 2]
    for activity in ("write_lan", "write_wan", "read_lan", "read_wan"):
        assert a["arprotocols"][activity] == a["arprotocols"]["w"]


# -- getJob --------------------------------------------------------------------------------


def test_get_job_takes_the_queue_node_label_and_memory() -> None:
    form = {"siteName": "local", "node": "wn1", "prodSourceLabel": "user", "mem": "2000",
            "cpu": "2400", "diskSpace": "100", "computingElement": "ce",
            "workingGroup": "", "allowOtherCountry": "False"}  # fmt: skip
    req = mapping.job_request(form)
    assert (req.queue, req.node, req.prod_source_label, req.memory_mb) == (
        "local", "wn1", "user", 2000
    )  # fmt: skip
    assert mapping.job_request({"computingSite": "q"}).queue == "q"
    defaults = mapping.job_request({"siteName": "q"})
    assert (defaults.node, defaults.prod_source_label, defaults.memory_mb) == (
        "unknown", "managed", None
    )  # fmt: skip


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({}, "siteName"),
        ({"siteName": "q", "colour": "red"}, "colour"),
        ({"siteName": "q", "mem": "lots"}, "mem"),
        ({"siteName": "q", "mem": str(2**40)}, "mem"),
        ({"siteName": "q", "node": "n" * 300}, "node"),
    ],
)
def test_a_bad_get_job_names_the_field(form: dict[str, str], field: str) -> None:
    with pytest.raises(PandaInputError, match=field) as e:
        mapping.job_request(form)
    assert _field(e) == field


# -- updateJob -----------------------------------------------------------------------------

JOB = job_id(TASK, 7)
PID = str(mapping.panda_id(JOB))


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("starting", JobStatus.STARTING),
        ("running", JobStatus.RUNNING),
        ("finished", JobStatus.FINISHED),
        ("failed", JobStatus.FAILED),
    ],
)
def test_each_reported_state_maps_to_skypandas(state: str, status: JobStatus) -> None:
    upd = mapping.job_update({"jobId": PID, "state": state, "attemptNr": "2", "node": "wn1"})
    assert upd.job_id == JOB and upd.node == "wn1"
    assert upd.report is not None
    assert (upd.report.job_id, upd.report.attempt, upd.report.status) == (JOB, 2, status)


@pytest.mark.parametrize("state", ["holding", "transferring"])
def test_a_live_state_without_a_change_is_a_heartbeat(state: str) -> None:
    upd = mapping.job_update({"jobId": PID, "state": state})
    assert upd.report is None


def test_a_finished_update_carries_exit_code_memory_and_log_tail() -> None:
    form = {"jobId": PID, "state": "finished", "attemptNr": "1", "transExitCode": "0",
            "pilotErrorCode": "0", "maxRSS": "204800", "pilotLog": "x" * 70_000 + "END",
            "xml": '{"f": {"guid": "g"}}', "pilotTiming": "1|2|3|4|5"}  # fmt: skip
    upd = mapping.job_update(form)
    assert upd.report is not None
    assert (upd.report.exit_code, upd.report.error_code, upd.report.max_rss_mb) == (0, None, 200)
    assert upd.log.endswith("END") and len(upd.log) == mapping.LOG_TAIL_CHARS


def test_a_final_update_logs_the_files_the_pilot_staged_out_then_its_log_tail() -> None:
    xml = json.dumps(
        {
            "j.1.log.tgz": {
                "fsize": "10",
                "adler32": "ab",
                "guid": "g",
                "surl": "file://localhost/x/j.1.log.tgz",
                "other": "z",
            }
        }
    )
    form = {"jobId": PID, "state": "finished", "attemptNr": "1", "transExitCode": "0",
            "xml": xml, "pilotLog": "the end"}  # fmt: skip
    log = mapping.job_update(form).log
    assert log == (
        "[panda pilot] staged out j.1.log.tgz: fsize=10 adler32=ab guid=g "
        "surl=file://localhost/x/j.1.log.tgz\nthe end"
    )
    for bad in ("{", "[1, 2]"):
        with pytest.raises(PandaInputError, match="xml") as e:
            mapping.job_update({**form, "xml": bad})
        assert _field(e) == "xml"


def test_a_pilot_error_code_is_skypandas_error_code() -> None:
    form = {"jobId": PID, "state": "failed", "attemptNr": "1", "pilotErrorCode": "1144",
            "pilotErrorDiag": "killed by the server", "transExitCode": "0"}  # fmt: skip
    report = mapping.job_update(form).report
    assert report is not None
    assert report.error_code == ErrorCode.KILLED_BY_SERVER
    assert report.error_diag == "killed by the server"


def test_a_payload_failure_is_payload_failed_with_its_exit_code() -> None:
    form = {"jobId": PID, "state": "failed", "attemptNr": "1", "pilotErrorCode": "0",
            "transExitCode": "3", "exeErrorDiag": "boom"}  # fmt: skip
    report = mapping.job_update(form).report
    assert report is not None
    assert (report.error_code, report.exit_code, report.error_diag) == (
        ErrorCode.PAYLOAD_FAILED, 3, "boom"
    )  # fmt: skip
    exe = mapping.job_update({**form, "transExitCode": "0", "exeErrorCode": "7"}).report
    assert exe is not None and exe.exit_code == 7


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"state": "running", "attemptNr": "1"}, "jobId"),
        ({"jobId": PID, "attemptNr": "1"}, "state"),
        ({"jobId": PID, "state": "merging", "attemptNr": "1"}, "state"),
        ({"jobId": PID, "state": "running"}, "attemptNr"),
        ({"jobId": PID, "state": "running", "attemptNr": "0"}, "attempt"),
        ({"jobId": PID, "state": "failed", "attemptNr": "1", "transExitCode": "x"},
         "transExitCode"),
        ({"jobId": PID, "state": "running", "attemptNr": "1", "favourite": "1"}, "favourite"),
    ],
)  # fmt: skip
def test_a_bad_update_names_the_field(form: dict[str, str], field: str) -> None:
    with pytest.raises(PandaInputError, match=field) as e:
        mapping.job_update(form)
    assert _field(e) == field


def test_the_update_reply_says_tobekilled_for_a_kill() -> None:
    assert mapping.update_reply(kill=False) == {"StatusCode": 0, "command": "NULL"}
    assert mapping.update_reply(kill=True) == {"StatusCode": 0, "command": "tobekilled"}


def test_a_refusal_is_in_pandas_envelope_naming_the_field() -> None:
    assert mapping.error_reply("bad mem", "mem") == {
        "StatusCode": mapping.SC_INVALID, "errorDialog": "bad mem", "field": "mem"
    }  # fmt: skip
    assert PandaInputError("x").http_status == 400


# -- which skypanda pilot a PanDA pilot is ---------------------------------------------------


class _Fleet:
    """Pilot records by id, as `pilots.current` reads them (counting the reads)."""

    def __init__(self, ended: int, live: bool) -> None:
        self.reads = 0
        self.pilots = {f"b-{g}": PilotStatus.MISSED for g in range(1, ended + 1)}
        if live:
            self.pilots[f"b-{ended + 1}"] = PilotStatus.RUNNING

    def get_pilot(self, pilot_id: str) -> Pilot:
        self.reads += 1
        if pilot_id not in self.pilots:
            raise NotFound(pilot_id)
        return Pilot(id=pilot_id, queue="q", status=self.pilots[pilot_id], created_at=0.0)


@pytest.mark.parametrize("ended", [0, 1, 2, 3, 7, 8, 100, 1000])
@pytest.mark.parametrize("live", [True, False])
def test_a_panda_pilot_is_the_first_generation_of_its_key_not_ended(ended: int, live: bool) -> None:
    fleet = _Fleet(ended, live)
    assert pilots.current(SimpleNamespace(fleet=fleet), "b") == ended + 1  # type: ignore[arg-type]
    assert fleet.reads <= 2 * (ended + 1).bit_length() + 1  # O(log k), not k


def test_a_pilot_key_is_per_credential_queue_and_node() -> None:
    keys = {pilots.key(*k) for k in [("a", "q", "n"), ("b", "q", "n"), ("a", "r", "n"),
                                     ("a", "q", "m")]}  # fmt: skip
    assert len(keys) == 4 and all(k.startswith("pp") for k in keys)
    mine = pilots.key("a", "q", "n") + "-3"
    assert pilots.owns("a", "q", "n", mine)
    assert not pilots.owns("b", "q", "n", mine) and not pilots.owns("a", "q", "m", mine)
    assert not pilots.owns("a", "q", "n", None)
