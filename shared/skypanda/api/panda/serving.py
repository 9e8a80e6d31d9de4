"""What the PanDA pilot's routes do, whichever wire shape a request came in: the
`/server/panda` forms of pilot 3.7 (`routes`) or the `/api/v1/pilot` JSON of newer pilots
(`pilot_v1`). Both decode to the same values (`mapping`); this module takes jobs for a PanDA
pilot, applies its updates, and stores what its final update staged out as the job's log.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from flask import request

from skypanda.api.panda import logs, mapping, pilots
from skypanda.api.panda.mapping import JobRequest, JobUpdate, PandaInputError
from skypanda.domain.models import Job, JobReport
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch
from skypanda.handlers.services import Services
from skypanda.wire.codes import ErrorCode

MAX_BODY_BYTES = 4 * 1024 * 1024
"""A PanDA pilot's request, gzipped or not (and a gzipped one unpacked)."""


def json_object() -> dict[str, Any]:
    """The request's body as a JSON object: gzipped (said by `Content-Encoding: gzip`, or not
    said: pilot 3.11 gzips without saying so) or plain.

    Raises:
        PandaInputError: a body too large, a corrupt gzip, not JSON, or not a JSON object.
    """
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise PandaInputError(f"a PanDA request is limited to {MAX_BODY_BYTES:,} bytes")
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        raise PandaInputError(f"a PanDA request is limited to {MAX_BODY_BYTES:,} bytes")
    if raw[:2] == b"\x1f\x8b" or request.content_encoding == "gzip":
        try:
            raw = _gunzip(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise PandaInputError(f"the gzipped body is corrupt: {e}", field="body") from e
    return mapping.json_object(raw, "body")


def _gunzip(raw: bytes) -> bytes:
    """Gunzip at most MAX_BODY_BYTES (a small bomb cannot fill memory)."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = d.decompress(raw, MAX_BODY_BYTES + 1)
    if len(out) > MAX_BODY_BYTES or d.unconsumed_tail:
        raise PandaInputError(f"a PanDA request is limited to {MAX_BODY_BYTES:,} bytes "
                              "unpacked", field="body")  # fmt: skip
    if not d.eof:
        raise PandaInputError("the gzipped body is truncated", field="body")
    return out


def acquire(svc: Services, principal: str, req: JobRequest, n: int = 1) -> list[dict[str, Any]]:
    """Up to `n` jobs for this PanDA pilot, described as it runs them (none: an empty list).

    A job claimed but not runnable by a PanDA pilot fails now, saying why, rather than wait
    as `sent` until the sweep finds it lost.

    Raises:
        PandaInputError: every job claimed was one a PanDA pilot cannot run (the first's
            reason). InvalidInput: an unknown or offline queue.
    """
    pilot_id = pilots.for_request(svc, principal=principal, queue=req.queue, node=req.node,
                                  memory_mb=req.memory_mb)  # fmt: skip
    described: list[dict[str, Any]] = []
    refused: PandaInputError | None = None
    for job in dispatch.acquire(svc, pilot_id, max(1, min(n, mapping.MAX_JOBS))):
        try:
            described.append(mapping.describe_job(job, req.prod_source_label))
        except PandaInputError as e:
            report = JobReport(job_id=job.id, attempt=job.attempt, status=JobStatus.FAILED,
                               error_code=ErrorCode.PAYLOAD_NOT_STARTED,
                               error_diag=e.message)  # fmt: skip
            dispatch.update(svc, pilot_id, [report], {})
            refused = refused or e
    if refused is not None and not described:
        raise refused
    return described


def update(svc: Services, principal: str, upd: JobUpdate, ddm_root: Path | None) -> bool:
    """Apply a PanDA pilot's update; whether it must kill the job (`tobekilled`).

    A job this caller's pilot on this node does not hold (any more) is to be killed. A
    repeated `running` is the heartbeat it is. A final update's log is the payload's output
    from the tarball it staged out (`payload_log`) and the pilot's own record.

    Raises:
        NotFound: no such job.
    """
    job = svc.jobs.get_job(upd.job_id)
    if not pilots.owns(principal, job.queue, upd.node, job.pilot_id):
        return True  # not its job (any more): stop it
    assert job.pilot_id is not None  # (owns says so)
    pilot_id = job.pilot_id
    accepted = True
    report = upd.report
    if report is not None and (report.status, report.attempt) == (job.status, job.attempt):
        report = None  # a repeated `running`: the heartbeat it is
    final = report is not None and report.status in (JobStatus.FINISHED, JobStatus.FAILED)
    if report is not None:
        text = payload_log(job, upd, ddm_root) + upd.log if final else upd.log
        results, _ = dispatch.update(svc, pilot_id, [report], {job.id: text} if text else {})
        accepted = all(r["accepted"] for r in results)
    reply = dispatch.heartbeat(svc, pilot_id, None)
    kill = not accepted or any(c.get("kill") == job.id for c in reply.commands)
    return kill and not final


def payload_log(job: Job, upd: JobUpdate, ddm_root: Path | None) -> str:
    """The payload's output from the log tarball a final update names, read from the DDM
    directory (`logs`); or why it could not be (a line saying so). Empty when the update
    names no log file of this attempt or there is no DDM directory here."""
    name = mapping.log_file_name(job)
    staged = [f for f in upd.staged if f.lfn == name]
    if ddm_root is None or not staged or not ddm_root.is_dir():
        return ""  # no DDM directory on this machine (a Cloud Function): nothing to read
    try:
        tarball = logs.read_tarball(ddm_root, mapping.ddm_path(name), staged[0])
        return logs.payload_output(tarball).text()
    except logs.TarballRefused as e:
        return f"[panda pilot] the log tarball {name} was not read: {e.message}\n"
