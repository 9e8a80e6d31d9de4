"""The PanDA pilot's routes over skypanda's dispatch handler (a Flask blueprint).

Authentication and the route table are the app's (`api.access`): a PanDA pilot sends its
token as `Authorization: Bearer`. Requests are decoded once (`mapping`), the dispatch handler
does the work, and replies and refusals are in PanDA's envelope (`StatusCode`).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from skypanda.api.panda import mapping, pilots
from skypanda.api.panda.mapping import PandaInputError
from skypanda.domain.errors import SkypandaError
from skypanda.domain.models import JobReport
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch
from skypanda.handlers.services import Services
from skypanda.wire.codes import ErrorCode

MAX_FORM_BYTES = 4 * 1024 * 1024
DEFAULT_DDM_PATH = "/tmp/skypanda-panda-ddm"
"""Where PanDA pilots `mv` their log files (`ddmendpoints.json`); a later step stores them."""


def blueprint(svc: Services, ddm_path: str = DEFAULT_DDM_PATH) -> Blueprint:
    """The PanDA pilot facade's routes (endpoints `panda.*` in `api.access.ROUTE_ROLES`)."""
    bp = Blueprint("panda", __name__)

    @bp.errorhandler(SkypandaError)
    def _refused(e: SkypandaError) -> tuple[Response, int]:
        body = mapping.error_reply(e.message, e.context.get("field"))
        if not isinstance(e, PandaInputError):
            body["StatusCode"] = mapping.SC_FAILED
        return jsonify(body), e.http_status

    @bp.post("/server/panda/getJob")
    def get_job() -> Response:
        req = mapping.job_request(_form())
        pilot_id = pilots.for_request(svc, principal=g.principal.name, queue=req.queue,
                                      node=req.node, memory_mb=req.memory_mb)  # fmt: skip
        jobs = dispatch.acquire(svc, pilot_id, 1)
        if not jobs:
            return jsonify({"StatusCode": mapping.SC_NO_JOBS})
        job = jobs[0]
        try:
            return jsonify(mapping.describe_job(job, req.prod_source_label))
        except PandaInputError as e:
            # Claimed but not runnable by a PanDA pilot: it fails now (saying why), rather
            # than wait as `sent` until the sweep finds it lost.
            report = JobReport(job_id=job.id, attempt=job.attempt, status=JobStatus.FAILED,
                               error_code=ErrorCode.PAYLOAD_NOT_STARTED,
                               error_diag=e.message)  # fmt: skip
            dispatch.update(svc, pilot_id, [report], {})
            raise

    @bp.post("/server/panda/updateJob")
    def update_job() -> Response:
        upd = mapping.job_update(_form())
        job = svc.jobs.get_job(upd.job_id)
        if not pilots.owns(g.principal.name, job.queue, upd.node, job.pilot_id):
            return jsonify(mapping.update_reply(kill=True))  # not its job (any more): stop it
        assert job.pilot_id is not None  # (owns says so)
        pilot_id = job.pilot_id
        accepted = True
        report = upd.report
        if report is not None and (report.status, report.attempt) == (job.status, job.attempt):
            report = None  # a repeated `running`: the heartbeat it is
        if report is not None:
            logs = {job.id: upd.log} if upd.log else {}
            results, _ = dispatch.update(svc, pilot_id, [report], logs)
            accepted = all(r["accepted"] for r in results)
        reply = dispatch.heartbeat(svc, pilot_id, None)
        kill = not accepted or any(c.get("kill") == job.id for c in reply.commands)
        final = report is not None and report.status in (JobStatus.FINISHED, JobStatus.FAILED)
        return jsonify(mapping.update_reply(kill=kill and not final))

    # One whole path segment, not `<queue>.all.json`: a URL map's path template (the cloud
    # front door, `runtime.deployment`) matches variables on whole segments only
    @bp.get("/cache/schedconfig/<file>")
    def schedconfig(file: str) -> Response:
        queue = mapping.schedconfig_queue(file)
        return jsonify(mapping.schedconfig(svc.fleet.get_queue(queue)))

    @bp.get("/cache/ddmendpoints.json")
    def ddm_endpoints() -> Response:
        return jsonify(mapping.ddm_endpoints(svc.fleet.list_queues(), ddm_path))

    return bp


def _form() -> dict[str, str]:
    """The request's fields: a form (pilot 3.7), or a JSON object, gzipped or not, with or
    without `Content-Encoding: gzip` (pilot 3.11 gzips without saying so).

    Raises:
        PandaInputError: a body that is not a form or a JSON object of scalars.
    """
    if (request.content_length or 0) > MAX_FORM_BYTES:
        raise PandaInputError(f"a PanDA request is limited to {MAX_FORM_BYTES:,} bytes")
    if request.mimetype != "application/json":
        return {k: v for k, v in request.form.items()}
    raw = request.get_data(cache=False)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gunzip(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise PandaInputError(f"the gzipped body is corrupt: {e}", field="body") from e
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise PandaInputError(f"the body is not JSON: {e}", field="body") from e
    if not isinstance(data, dict):
        raise PandaInputError("the body must be a JSON object", field="body")
    out: dict[str, str] = {}
    for name, value in data.items():
        if isinstance(value, dict | list):
            value = json.dumps(value)
        out[str(name)] = "" if value is None else str(value)
    return out


def _gunzip(raw: bytes) -> bytes:
    """Gunzip at most MAX_FORM_BYTES (a small bomb cannot fill memory)."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = d.decompress(raw, MAX_FORM_BYTES + 1)
    if len(out) > MAX_FORM_BYTES or d.unconsumed_tail:
        raise PandaInputError(f"a PanDA request is limited to {MAX_FORM_BYTES:,} bytes")
    return out
