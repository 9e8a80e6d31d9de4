"""The newer PanDA pilot API's wire shape (`api.panda.pilot_v1`: snake_case JSON renamed to
the `/server/panda` fields, one mapping for both), and reading a pilot's log tarball back
from the DDM directory (`api.panda.logs`): only the file skypanda placed, checked, bounded."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from pathlib import Path

import pytest

from skypanda.api.panda import logs, mapping
from skypanda.api.panda.mapping import PandaInputError, StagedFile
from skypanda.api.panda.pilot_v1 import ACQUIRE_NAMES, UPDATE_NAMES, envelope, refusal
from skypanda.domain.errors import Forbidden, NotFound, Unauthorized
from skypanda.domain.models import Job, Resources
from skypanda.domain.states import JobStatus
from skypanda.wire.codes import ErrorCode

PID = str(int("0123456789ab" + "cdef01234567", 16))  # job t0123456789ab-cdef01234567


def v1_update(**fields: object) -> mapping.JobUpdate:
    body = {"job_id": int(PID), "job_status": "running", "node": "wn1", **fields}
    return mapping.job_update(mapping.renamed(body, UPDATE_NAMES))


def v1_request(**fields: object) -> mapping.JobRequest:
    body = {"site_name": "local", "node": "wn1", **fields}
    return mapping.job_request(mapping.renamed(body, ACQUIRE_NAMES))


# -- the names -------------------------------------------------------------------------------


def test_every_v1_name_is_a_field_the_legacy_decoders_take() -> None:
    # (an unknown one would be refused after renaming, under a name the caller never sent)
    assert set(ACQUIRE_NAMES.values()) <= mapping.GET_JOB_FIELDS
    assert set(UPDATE_NAMES.values()) <= mapping.UPDATE_FIELDS


def test_an_unknown_v1_field_is_refused_by_its_own_name() -> None:
    with pytest.raises(PandaInputError) as e:
        mapping.renamed({"site_name": "local", "siteName": "x", "colour": 1}, ACQUIRE_NAMES)
    assert e.value.context["field"] == "colour" and "and 1 more" in e.value.message


@pytest.mark.parametrize(
    ("value", "text"),
    [(12, "12"), (1.5, "1.5"), (True, "True"), (None, ""), ("x", "x"),
     ({"gpus": []}, '{"gpus": []}'), ([1, 2], "[1, 2]")],
)  # fmt: skip
def test_json_values_become_the_forms_text(value: object, text: str) -> None:
    assert mapping.renamed({"node": value}, ACQUIRE_NAMES) == {"node": text}


# -- acquire_jobs ----------------------------------------------------------------------------


def test_acquire_jobs_fields_map_to_a_job_request() -> None:
    req = v1_request(memory=1500, prod_source_label="ptest", n_jobs=3, disk_space=9,
                     computing_element="local", job_type="managed", resource_type="SCORE",
                     target_architecture={"gpus": []}, worker_id=7, harvester_id="h")  # fmt: skip
    assert req == mapping.JobRequest(queue="local", node="wn1", prod_source_label="ptest",
                                     memory_mb=1500, n_jobs=3)  # fmt: skip
    assert v1_request().n_jobs == 1 and v1_request().memory_mb is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"site_name": ""}, "site_name"), ({"memory": "lots"}, "memory"),
     ({"n_jobs": 0}, "n_jobs"), ({"n_jobs": 101}, "n_jobs"), ({"node": "n" * 300}, "node")],
)  # fmt: skip
def test_a_bad_acquire_jobs_field_is_refused_by_its_v1_name(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(PandaInputError) as e:
        v1_request(**fields)
    assert e.value.context["field"] == field and field in e.value.message, e.value.message


# -- update_job ------------------------------------------------------------------------------


def test_a_heartbeat_is_no_report() -> None:
    upd = v1_update(job_status="holding")
    assert upd.job_id == "t0123456789ab-cdef01234567" and upd.node == "wn1"
    assert upd.report is None


def test_a_final_update_job_maps_codes_memory_and_the_log_tarball() -> None:
    staged = {"guid": "g", "fsize": 3895, "adler32": "298686cb",
              "surl": "file://localhost/d/j.1.log.tgz"}  # fmt: skip
    report_xml = json.dumps({"j.1.log.tgz": staged})
    upd = v1_update(job_status="failed", attempt_nr=2, pilot_error_code=1144,
                    pilot_error_diag="killed by panda server", trans_exit_code=0,
                    max_rss=2048 * 1024, job_output_report=report_xml, pilot_log="the end",
                    cpu_consumption_unit="s", core_count=1, mean_core_count=1,
                    end_time="2026-01-01 00:00:00", tot_rbytes=10, grid="x")  # fmt: skip
    assert upd.report is not None
    r = upd.report
    assert (r.status, r.attempt, r.error_code) == (JobStatus.FAILED, 2, 1144)
    assert r.error_diag == "killed by panda server" and r.max_rss_mb == 2048
    assert upd.staged == (StagedFile("j.1.log.tgz", "g", 3895, "298686cb",
                                     "file://localhost/d/j.1.log.tgz"),)  # fmt: skip
    assert upd.log.startswith("[panda pilot] staged out j.1.log.tgz: fsize=3895 adler32=")
    assert upd.log.endswith("the end")


def test_a_failed_payload_without_a_pilot_code_is_payload_failed_with_its_exit_code() -> None:
    upd = v1_update(job_status="failed", attempt_nr=1, trans_exit_code=3)
    assert upd.report is not None and upd.report.exit_code == 3
    assert upd.report.error_code == ErrorCode.PAYLOAD_FAILED


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"job_status": "merging"}, "job_status"), ({"job_id": "abc"}, "job_id"),
     ({"job_id": None}, "job_id"), ({"job_status": "finished"}, "attempt_nr"),
     ({"job_status": "finished", "attempt_nr": 1, "trans_exit_code": "x"}, "trans_exit_code"),
     ({"job_status": "finished", "attempt_nr": 1, "job_output_report": "[1]"},
      "job_output_report"),
     ({"job_status": "running", "attempt_nr": 2**40}, "attempt_nr")],
)  # fmt: skip
def test_a_bad_update_job_field_is_refused_by_its_v1_name(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(PandaInputError) as e:
        v1_update(**fields)
    assert e.value.context["field"] == field and field in e.value.message, e.value.message


# -- replies and refusals -------------------------------------------------------------------


def test_replies_are_in_panda_servers_envelope() -> None:
    assert envelope(True, data={"StatusCode": 0}) == {
        "success": True, "message": "", "data": {"StatusCode": 0}}  # fmt: skip
    body = refusal(PandaInputError("node is too long", field="node"))
    assert body == {"success": False, "message": "node is too long",
                    "data": {"StatusCode": 50, "field": "node"}}  # fmt: skip


@pytest.mark.parametrize(
    ("error", "code"),
    [(PandaInputError("x"), 50), (Unauthorized("x"), 60), (Forbidden("x"), 60),
     (NotFound("no job"), 30)],
)  # fmt: skip
def test_refusals_carry_panda_servers_status_codes(error: Exception, code: int) -> None:
    assert mapping.status_code(error) == code  # type: ignore[arg-type]


# -- where a log is, and reading it back -----------------------------------------------------


def _job(attempt: int = 1) -> Job:
    return Job(id="t0123456789ab-cdef01234567", task_id="t0123456789ab", index=0,
               command=["x"], queue="local", status=JobStatus.RUNNING, attempt=attempt,
               resources=Resources(), created_at=0.0, updated_at=0.0)  # fmt: skip


def test_a_log_goes_where_the_pilot_puts_it_the_rucio_deterministic_path() -> None:
    lfn = "t0123456789ab-cdef01234567.2.log.tgz"
    digest = hashlib.md5(f"skypanda:{lfn}".encode()).hexdigest()
    assert mapping.log_file_name(_job(2)) == lfn
    assert mapping.ddm_path(lfn) == f"skypanda/{digest[:2]}/{digest[2:4]}/{lfn}"


def _tarball(files: dict[str, bytes], top: str = "tarball_PandaJob_1_local") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _staged(data: bytes, surl: str = "") -> StagedFile:
    return StagedFile("j.log.tgz", "g", len(data), f"{zlib.adler32(data):08x}", surl)


def _place(root: Path, data: bytes, relative: str = "skypanda/ab/cd/j.log.tgz") -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return relative


def test_the_payloads_output_is_read_from_the_checked_tarball(tmp_path: Path) -> None:
    data = _tarball({"payload.stdout": b"hello\n", "payload.stderr": b"oops\n",
                     "pilotlog.txt": b"pilot"})  # fmt: skip
    relative = _place(tmp_path, data)
    surl = f"file://localhost{tmp_path / relative}"
    read = logs.read_tarball(tmp_path, relative, _staged(data, surl))
    assert logs.payload_output(read).text() == "hello\n[panda pilot] payload.stderr:\noops\n"


@pytest.mark.parametrize(
    ("change", "field"),
    [({"fsize": 1}, "fsize"), ({"adler32": "00000000"}, "adler32"),
     ({"surl": "file://localhost/etc/passwd"}, "surl")],
)  # fmt: skip
def test_a_tarball_not_as_reported_is_refused(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    data = _tarball({"payload.stdout": b"hello\n"})
    relative = _place(tmp_path, data)
    staged = _staged(data).__class__(**{**_staged(data).__dict__, **change})
    with pytest.raises(logs.TarballRefused) as e:
        logs.read_tarball(tmp_path, relative, staged)
    assert e.value.context["field"] == field


def test_only_a_regular_file_under_the_ddm_directory_is_read(tmp_path: Path) -> None:
    root = tmp_path / "ddm"
    secret = tmp_path / "secret.tgz"
    secret.write_bytes(_tarball({"payload.stdout": b"secret"}))
    (root / "skypanda" / "ab").mkdir(parents=True)
    (root / "skypanda" / "ab" / "cd").symlink_to(tmp_path)  # a link on the way out
    (root / "skypanda" / "ab" / "link.tgz").symlink_to(secret)  # a link as the file
    os.mkfifo(root / "skypanda" / "fifo.tgz")  # would block an open without O_NONBLOCK
    for relative in ("skypanda/ab/cd/secret.tgz", "skypanda/ab/link.tgz",
                     "skypanda/fifo.tgz", "../secret.tgz", "skypanda/missing.tgz"):  # fmt: skip
        with pytest.raises(logs.TarballRefused):
            logs.read_tarball(root, relative, _staged(secret.read_bytes()))


def test_a_tarball_over_the_cap_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tarball({"payload.stdout": b"x" * 1000})
    relative = _place(tmp_path, data)
    monkeypatch.setattr(logs, "MAX_TARBALL_BYTES", len(data) - 1)
    with pytest.raises(logs.TarballRefused, match="more than"):
        logs.read_tarball(tmp_path, relative, _staged(data))


def test_a_tarball_bomb_stops_at_the_unpack_limit() -> None:
    # 8 MB of zeros before the payload's output: a few KB gzipped
    bomb = _tarball({"big.bin": bytes(8 * 1024 * 1024), "payload.stdout": b"hello"})
    assert len(bomb) < 64 * 1024
    with pytest.raises(logs.TarballRefused, match="unpacks to more than"):
        logs.payload_output(bomb, unpack_limit=1024 * 1024)
    assert logs.payload_output(bomb).files["payload.stdout"] == "hello"


def test_not_a_tarball_is_refused_saying_so() -> None:
    for data in (b"plain text", gzip.compress(b"not a tar" * 100)):
        with pytest.raises(logs.TarballRefused, match="not a gzipped tar"):
            logs.payload_output(data)


def test_a_long_output_keeps_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_OUTPUT_BYTES", 10)
    out = logs.payload_output(_tarball({"payload.stdout": b"0123456789abcdefghij"}))
    assert out.files["payload.stdout"].endswith("\nabcdefghij")
    assert "start of this output is in the log tarball" in out.files["payload.stdout"]


def test_only_the_top_directorys_payload_files_are_taken() -> None:
    out = logs.payload_output(_tarball({"payload.stdout": b"top", "sub/payload.stdout": b"no"}))
    assert out.files == {"payload.stdout": "top"}


def test_a_tarball_of_too_many_files_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_MEMBERS", 3)
    many = _tarball({f"f{i}": b"" for i in range(4)} | {"payload.stdout": b"late"})
    with pytest.raises(logs.TarballRefused, match="more than 3 files"):
        logs.payload_output(many)
