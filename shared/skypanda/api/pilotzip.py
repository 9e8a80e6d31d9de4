"""The pilot as a single-file zipapp, served to pilot starters (`GET /v1/pilot.pyz`).

    curl -H "Authorization: Bearer $TOKEN" $SERVER/v1/pilot.pyz -o pilot.pyz
    python3 pilot.pyz --server $SERVER --queue Q --token-file tokenfile

Like every route, it needs the bearer token (checked in `api.app`). The bytes are the same on
every build of one skypanda version, so their sha256 is a strong ETag: a starter that sends
`If-None-Match` with it gets 304 and keeps its copy.
"""

from __future__ import annotations

import functools
import hashlib

from flask import Flask, Response, request

from skypanda.api.zipapp import build_zipapp
from skypanda.handlers.services import Services


@functools.cache
def _etag() -> str:
    return hashlib.sha256(build_zipapp()).hexdigest()


def routes(app: Flask, svc: Services) -> None:
    """Register `GET /v1/pilot.pyz` (the zipapp needs nothing from `svc`)."""

    @app.get("/v1/pilot.pyz")
    def pilot_zipapp() -> Response:
        etag = _etag()
        if request.if_none_match.contains_weak(etag):  # RFC 9110: weak comparison
            response = Response(status=304)
        else:
            response = Response(build_zipapp(), mimetype="application/zip")
            response.headers["Content-Disposition"] = "attachment; filename=pilot.pyz"
        response.set_etag(etag)
        response.headers["Cache-Control"] = "no-cache"  # may be kept, but revalidated
        return response
