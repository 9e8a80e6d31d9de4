"""Job action routes: kill one job (`POST /v1/jobs/<job_id>/kill`) or a list of them
(`POST /v1/jobs/kill` with `{"job_ids": [...]}`), as PanDA's killJobs; ownership is checked
by the handler (`handlers.job_actions`)."""

from __future__ import annotations

from typing import Annotated

from flask import Flask, Response, g, jsonify
from pydantic import BaseModel, ConfigDict, Field

from skypanda.api.bodies import json_object, validate
from skypanda.domain.errors import InvalidInput
from skypanda.domain.job_kill import MAX_KILL_JOBS, WRITTEN, too_many
from skypanda.domain.records import MAX_ID_CHARS
from skypanda.handlers import job_actions
from skypanda.handlers.services import Services

JobIdText = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]


class KillJobsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    job_ids: list[JobIdText] = Field(min_length=1, max_length=MAX_KILL_JOBS)


def routes(app: Flask, svc: Services) -> None:
    @app.post("/v1/jobs/<job_id>/kill")
    def kill_job(job_id: str) -> Response:
        done = job_actions.kill_job(svc, job_id, g.owner, admin=g.admin)
        return jsonify(done.as_dict())

    @app.post("/v1/jobs/kill")
    def kill_jobs() -> Response:
        data = json_object()
        ids = data.get("job_ids")
        if isinstance(ids, list) and len(ids) > MAX_KILL_JOBS:  # said plainly, before a check
            raise InvalidInput(too_many(len(ids)), field="job_ids")  # of each of them
        body = validate(KillJobsBody, data)
        done = job_actions.kill_jobs(svc, body.job_ids, g.owner, admin=g.admin)
        killed = sum(d.result in WRITTEN for d in done)
        return jsonify({"killed": killed, "results": [d.as_dict() for d in done]})
