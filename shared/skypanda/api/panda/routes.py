"""The PanDA pilot's routes over skypanda's dispatch handler (a Flask blueprint).

Two wire shapes, one facade: the `/server/panda` forms of pilot 3.7 here, and the
`/api/v1/pilot` JSON of newer pilots (`pilot_v1`, a blueprint nested in this one). Both are
decoded once into the same values (`mapping`) and served by the same code (`serving`).

Authentication and the route table are the app's (`api.access`): a PanDA pilot sends its
token as `Authorization: Bearer`. Replies and refusals here are in PanDA's envelope
(`StatusCode`).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, g, jsonify, request

from skypanda.api.panda import mapping, pilot_v1, serving
from skypanda.domain.errors import SkypandaError
from skypanda.handlers.services import Services

DEFAULT_DDM_PATH = "/tmp/skypanda-panda-ddm"
"""Where PanDA pilots `mv` their log files (`ddmendpoints.json`) when the server has no home
of its own to offer (a Cloud Function): a directory on the pilot's machine. The embedded
system offers `<home>/panda-ddm`, which it then reads the logs from (`serving.payload_log`)."""


def blueprint(svc: Services, ddm_path: str | Path | None = None) -> Blueprint:
    """The PanDA pilot facade's routes (endpoints `panda.*` in `api.access.ROUTE_ROLES`).

    Args:
        ddm_path: the directory PanDA pilots stage logs out to (`ddmendpoints.json`); when it
            is a directory of this machine, their final updates' log tarballs are read there.
    """
    bp = Blueprint("panda", __name__)
    ddm = Path(ddm_path or DEFAULT_DDM_PATH)

    @bp.errorhandler(SkypandaError)
    def _refused(e: SkypandaError) -> tuple[Response, int]:
        body = mapping.error_reply(e.message, e.context.get("field"), mapping.status_code(e))
        return jsonify(body), e.http_status

    @bp.post("/server/panda/getJob")
    def get_job() -> Response:
        form = _form()
        req = mapping.job_request(form)
        jobs = serving.acquire(svc, g.principal.name, req, req.n_jobs)
        if not jobs:
            return jsonify({"StatusCode": mapping.SC_NO_JOBS})
        if form.get("nJobs"):  # a bulk request is answered in bulk, as panda-server does
            return jsonify({"StatusCode": mapping.SC_SUCCESS, "jobs": jobs})
        return jsonify(jobs[0])

    @bp.post("/server/panda/updateJob")
    def update_job() -> Response:
        upd = mapping.job_update(_form())
        kill = serving.update(svc, g.principal.name, upd, ddm)
        return jsonify(mapping.update_reply(kill=kill))

    # One whole path segment, not `<queue>.all.json`: a URL map's path template (the cloud
    # front door, `runtime.deployment`) matches variables on whole segments only
    @bp.get("/cache/schedconfig/<file>")
    def schedconfig(file: str) -> Response:
        queue = mapping.schedconfig_queue(file)
        return jsonify(mapping.schedconfig(svc.fleet.get_queue(queue)))

    @bp.get("/cache/ddmendpoints.json")
    def ddm_endpoints() -> Response:
        return jsonify(mapping.ddm_endpoints(svc.fleet.list_queues(), str(ddm)))

    bp.register_blueprint(pilot_v1.blueprint(svc, ddm))
    return bp


def _form() -> dict[str, str]:
    """The request's fields: a form (pilot 3.7), or a JSON object, gzipped or not, with or
    without `Content-Encoding: gzip` (pilot 3.11 gzips without saying so).

    Raises:
        PandaInputError: a body too large, or not a form or a JSON object.
    """
    if request.mimetype == "application/json":
        return {k: mapping.as_text(v) for k, v in serving.json_object().items()}
    if (request.content_length or 0) > serving.MAX_BODY_BYTES:
        raise mapping.PandaInputError(
            f"a PanDA request is limited to {serving.MAX_BODY_BYTES:,} bytes"
        )
    return {k: v for k, v in request.form.items()}
