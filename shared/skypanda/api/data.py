"""Job data: outputs uploaded by pilots into the blob store (stage-out).

    PUT /v1/jobs/<job_id>/outputs/<name>?attempt=N&pilot=P     raw bytes of one output file
        -> 201 {"name", "uri", "size", "sha256"}

`name` is the output's path relative to the job's working directory (it may hold `/`). The
logic is in `handlers.data`; this module reads the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from flask import Flask, Response, jsonify, request

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import jsonable
from skypanda.handlers.data import CHUNK_BYTES, MAX_OUTPUT_BYTES, store_output
from skypanda.handlers.services import Services


def _chunks(stream: IO[bytes], size: int) -> Iterator[bytes]:
    """The stream in pieces of `size` bytes (the last one shorter): a read may return less."""
    buf = bytearray()
    while True:
        data = stream.read(size - len(buf))
        if not data:
            break
        buf += data
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def _arg(name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise InvalidInput(f"query parameter {name} is required", field=name)
    return value


def routes(app: Flask, svc: Services) -> None:
    """Register the data routes (behind the app's bearer authentication)."""

    @app.put("/v1/jobs/<job_id>/outputs/<path:name>")
    def put_output(job_id: str, name: str) -> tuple[Response, int]:
        raw = _arg("attempt")
        if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
            raise InvalidInput(f"query parameter attempt must be 1 to 10000, not {raw!r}")
        request.max_content_length = MAX_OUTPUT_BYTES  # the app's limit is for JSON bodies
        output = store_output(
            svc,
            job_id=job_id,
            attempt=int(raw),
            pilot_id=_arg("pilot"),
            name=name,
            chunks=_chunks(request.stream, CHUNK_BYTES),
        )
        return jsonify(jsonable(output)), 201
