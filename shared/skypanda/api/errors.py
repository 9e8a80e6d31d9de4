"""Error-to-HTTP mapping in one place: every error is JSON with a message that names the problem."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from skypanda.domain.errors import MAX_PROBLEMS, SkypandaError, summarise

log = logging.getLogger(__name__)


def _json(status: int, error: str, message: str, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": error, "message": message, **extra}), status


def validation_message(e: ValidationError, prefix: str = "") -> str:
    """The first problems, each naming its field (a million bad values make one short line)."""
    errors = e.errors(include_url=False, include_input=False)
    parts = [
        f"{prefix}{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}"
        for err in errors[:MAX_PROBLEMS]
    ]
    return summarise(parts, len(errors))


def error_json(e: BaseException) -> tuple[dict[str, object], int]:
    """The JSON body and HTTP status that answer an error (what the handlers below send;
    `api.pilot_path` answers its errors with it). An unexpected error is logged here."""
    if isinstance(e, SkypandaError):
        body = e.to_dict()
        return {"error": body.pop("error"), "message": body.pop("message"), **body}, e.http_status
    if isinstance(e, ValidationError):
        return {"error": "InvalidInput", "message": validation_message(e)}, 422
    if isinstance(e, RecursionError):
        return {"error": "InvalidInput", "message": "the request is nested too deeply"}, 422
    log.exception("unhandled error")
    message = f"internal error ({type(e).__name__}); see server log"
    return {"error": "InternalError", "message": message}, 500


def install(app: Flask) -> None:
    def _answer(e: BaseException) -> tuple[Response, int]:
        body, status = error_json(e)
        return jsonify(body), status

    # Each its own registration (Flask answers with the most specific), one answer: error_json
    for kind in (SkypandaError, ValidationError, RecursionError, Exception):
        app.register_error_handler(kind, _answer)

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> tuple[Response, int]:
        return _json(e.code or 500, type(e).__name__, e.description or str(e))
