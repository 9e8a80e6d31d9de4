"""The newer PanDA pilot API (`/api/v1/pilot/...`), as panda-server's `api/v1/pilot_api.py`
serves it and pilot3 calls it: POSTed JSON objects with snake_case names (gzipped, saying so
with `Content-Encoding: gzip`), replies wrapped as `{"success", "message", "data"}`.

Only the wire shape is here: each body is renamed to the `/server/panda` fields
(`mapping.renamed`, refusals naming the snake_case field as sent) and served by the same code
as pilot 3.7's forms (`serving`).

    POST /api/v1/pilot/acquire_jobs      data {"StatusCode": 0, "jobs": [job, ...]}; none:
                                         success false, "No jobs in PanDA" (as panda-server)
    POST /api/v1/pilot/update_job        data {"StatusCode": 0, "command": "NULL"|"tobekilled"}
    POST /api/v1/pilot/update_jobs_bulk  {"job_list": [update, ...]}: data, one reply each

A refusal keeps its HTTP status (400 bad input, 401, 403, 404) and says why in the envelope:
`{"success": false, "message": ..., "data": {"StatusCode": 50|60|30, "field": ...}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flask import Blueprint, Response, g, jsonify

from skypanda.api.panda import mapping, serving
from skypanda.api.panda.mapping import PandaInputError
from skypanda.domain.errors import SkypandaError
from skypanda.handlers.services import Services

ACQUIRE_NAMES: Mapping[str, str] = MappingProxyType(
    {"site_name": "siteName", "computing_element": "computingElement",
     "prod_source_label": "prodSourceLabel", "disk_space": "diskSpace", "memory": "mem",
     "node": "node", "job_type": "jobType", "prod_user_id": "prodUserID", "task_id": "taskID",
     "via_topic": "viaTopic", "resource_type": "resourceType", "scheduler_id": "schedulerID",
     "worker_id": "worker_id", "harvester_id": "harvester_id", "timeout": "timeout",
     "get_proxy_key": "getProxyKey", "background": "background",
     "remaining_time": "remainingTime", "target_architecture": "targetArchitecture",
     "n_jobs": "nJobs"}
)  # fmt: skip
"""`acquire_jobs`' arguments (panda-server's) -> `getJob`'s fields."""

UPDATE_NAMES: Mapping[str, str] = MappingProxyType(
    {"job_id": "jobId", "job_status": "state", "site_name": "siteName", "node": "node",
     "attempt_nr": "attemptNr", "scheduler_id": "schedulerID", "pilot_id": "pilotID",
     "batch_id": "batchID", "start_time": "startTime", "end_time": "endTime",
     "job_output_report": "xml", "meta_data": "metaData", "stdout": "stdout",
     "core_count": "coreCount", "mean_core_count": "meanCoreCount", "n_events": "nEvents",
     "n_input_files": "nInputFiles", "cpu_consumption_time": "cpuConsumptionTime",
     "cpu_conversion_factor": "cpuConversionFactor",
     "cpu_consumption_unit": "cpuConsumptionUnit",
     "cpu_architecture_level": "cpu_architecture_level", "max_rss": "maxRSS",
     "max_vmem": "maxVMEM", "max_swap": "maxSWAP", "max_pss": "maxPSS", "avg_rss": "avgRSS",
     "avg_vmem": "avgVMEM", "avg_swap": "avgSWAP", "avg_pss": "avgPSS",
     "tot_rchar": "totRCHAR", "tot_wchar": "totWCHAR", "tot_rbytes": "totRBYTES",
     "tot_wbytes": "totWBYTES", "rate_rchar": "rateRCHAR", "rate_wchar": "rateWCHAR",
     "rate_rbytes": "rateRBYTES", "rate_wbytes": "rateWBYTES",
     "corrupted_files": "corruptedFiles", "job_metrics": "jobMetrics",
     "pilot_timing": "pilotTiming", "pilot_log": "pilotLog", "pilot_error_code": "pilotErrorCode",
     "pilot_error_diag": "pilotErrorDiag", "trans_exit_code": "transExitCode",
     "exe_error_code": "exeErrorCode", "exe_error_diag": "exeErrorDiag",
     "job_sub_status": "jobSubStatus", "grid": "grid", "source_site": "sourceSite",
     "destination_site": "destinationSite", "timeout": "timeout"}
)  # fmt: skip
"""`update_job`'s arguments (panda-server's) -> `updateJob`'s fields."""

MAX_BULK = 100
"""Updates in one `update_jobs_bulk`."""


def envelope(success: bool, message: str = "", data: Any = None) -> dict[str, Any]:
    """panda-server's reply to every `/api/v1` call."""
    return {"success": success, "message": message, "data": data}


def refusal(e: SkypandaError) -> dict[str, Any]:
    """A refusal in the envelope: the message, PanDA's StatusCode, the field it names."""
    data: dict[str, Any] = {"StatusCode": mapping.status_code(e)}
    if e.context.get("field"):
        data["field"] = e.context["field"]
    return envelope(False, e.message, data)


def blueprint(svc: Services, ddm: Path) -> Blueprint:
    """The `/api/v1/pilot` routes (endpoints `panda.pilot_v1.*`: nested in `routes`')."""
    bp = Blueprint("pilot_v1", __name__, url_prefix="/api/v1/pilot")

    @bp.errorhandler(SkypandaError)
    def _refused(e: SkypandaError) -> tuple[Response, int]:
        return jsonify(refusal(e)), e.http_status

    @bp.post("/acquire_jobs")
    def acquire_jobs() -> Response:
        req = mapping.job_request(mapping.renamed(serving.json_object(), ACQUIRE_NAMES))
        jobs = serving.acquire(svc, g.principal.name, req, req.n_jobs)
        if not jobs:
            return jsonify(envelope(False, "No jobs in PanDA"))
        return jsonify(envelope(True, data={"StatusCode": mapping.SC_SUCCESS, "jobs": jobs}))

    @bp.post("/update_job")
    def update_job() -> Response:
        return jsonify(_update(svc, serving.json_object(), ddm))

    @bp.post("/update_jobs_bulk")
    def update_jobs_bulk() -> Response:
        body = serving.json_object()
        mapping.renamed(body, {"job_list": "job_list", "harvester_id": "harvester_id"})
        updates = body.get("job_list")
        if not isinstance(updates, list) or len(updates) > MAX_BULK:
            raise PandaInputError(f"job_list must be a list of at most {MAX_BULK} updates",
                                  field="job_list")  # fmt: skip
        replies = []
        for item in updates:
            try:
                if not isinstance(item, dict):
                    raise PandaInputError("each update of job_list must be a JSON object",
                                          field="job_list")  # fmt: skip
                replies.append(_update(svc, item, ddm))
            except SkypandaError as e:  # one bad update is refused alone, as panda-server
                replies.append(refusal(e))
        return jsonify(envelope(True, data=replies))

    return bp


def _update(svc: Services, body: dict[str, Any], ddm: Path) -> dict[str, Any]:
    upd = mapping.job_update(mapping.renamed(body, UPDATE_NAMES))
    kill = serving.update(svc, g.principal.name, upd, ddm)
    return envelope(True, data=mapping.update_reply(kill=kill))
