"""Request bodies, read with bounds: size, depth, values, text (`formats.limits`), finite
numbers; and at most a few submissions parsed at once, so a burst of large ones cannot take
the threads that answer pilots' heartbeats.

JSON is parsed by the standard library's C decoder; `NaN`, `Infinity` and numbers that
overflow a float (`1e999`) are refused while parsing, so no non-finite value gets further.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

from flask import g, request
from pydantic import BaseModel, ValidationError

from skypanda.api.errors import validation_message
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.formats.limits import DEFAULT as DEFAULT_LIMITS
from skypanda.formats.limits import check_value

B = TypeVar("B", bound=BaseModel)

MAX_JSON_BYTES = 32 * 1024 * 1024
"""A JSON body: a task of a million inputs is about 20 MB."""
MAX_YAML_BYTES = 4 * 1024 * 1024
"""A YAML body: YAML parses at a few MB/s even with libyaml; send larger documents as JSON."""
YAML = ("application/yaml", "application/x-yaml", "text/yaml")
MAX_LINE_BYTES = 1024 * 1024
"""One line of a JSON-lines body (a graph job, or the workflow line)."""
SUBMISSIONS_AT_ONCE = 2
"""Submissions parsed and validated at the same time; others wait (up to SUBMISSION_WAIT_S)."""
SUBMISSION_WAIT_S = 2.0
"""Short: a waiting request holds a server thread, and those also answer the pilots."""

_parsing = threading.BoundedSemaphore(SUBMISSIONS_AT_ONCE)


class TooLarge(InvalidInput):
    http_status = 413


def _refuse_constant(name: str) -> float:
    raise InvalidInput(f"the request body holds {name}: numbers must be finite")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput(f"the request body holds {text[:40]}, which overflows a number")
    return value


def parse_json(raw: bytes | str, source: str = "the request body") -> Any:
    """Raises: InvalidInput: not JSON, a non-finite number, or beyond `formats.limits`."""
    try:
        data = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError as e:
        raise InvalidInput(f"{source} is nested too deeply") from e
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        if isinstance(e, InvalidInput):
            raise
        raise InvalidInput(f"{source} is not JSON: {str(e)[:200]}") from e
    if not _plainly_within_limits(raw):
        check_value(data, source)
    return data


def _plainly_within_limits(raw: bytes | str) -> bool:
    """Whether `raw` cannot cross a bound of `check_value`, as told from its text alone (a
    few passes in C instead of a walk over every value, for the small bodies pilots send
    with each report): ASCII without a `\\u` escape holds no NUL nor lone surrogate once
    parsed; at most `depth` opening brackets nest at most that deep; no more values nor
    characters than bytes."""
    if not isinstance(raw, bytes) or not raw.isascii() or b"\\u" in raw:
        return False
    limits = DEFAULT_LIMITS
    if len(raw) > min(limits.values, limits.chars):
        return False
    return raw.count(b"[") + raw.count(b"{") <= limits.depth


def _raw(limit: int, too_large: str) -> bytes:
    """The request's body, at most `limit` bytes. Raises TooLarge (`too_large`)."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(too_large)
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise TooLarge(too_large)
    return raw


def json_body(limit: int = MAX_JSON_BYTES) -> Any:
    """The request's JSON body, parsed and checked (kept in `g.json_body` for the audit trail,
    which must not parse it again).

    Raises:
        TooLarge: over `limit` bytes. InvalidInput: no body, not JSON, or beyond the limits.
    """
    raw = _raw(limit, f"the request body is over {limit:,} bytes")
    if not raw.strip():
        raise InvalidInput("the request body must be a JSON object")
    g.json_body = parse_json(raw)
    return g.json_body


def yaml_text(limit: int = MAX_YAML_BYTES) -> str:
    """The request's YAML body as text (parsed by `formats.taskfile`).

    Raises:
        TooLarge: over `limit` bytes (JSON takes larger documents). InvalidInput: not UTF-8.
    """
    raw = _raw(limit, f"a YAML body is limited to {limit:,} bytes; send larger ones as JSON")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"the request body is not UTF-8: {e}") from e


def model_body(model: type[B]) -> B:
    """The JSON body as `model`.

    Raises:
        InvalidInput: not a JSON object, or not valid (the first problems, naming fields).
    """
    return validate(model, json_object())


def json_object() -> dict[str, Any]:
    """Raises: InvalidInput: the body is not a JSON object (or any `json_body` refusal)."""
    return _an_object(json_body())


def object_of(raw: bytes) -> dict[str, Any]:
    """`json_object` of a body read already (`api.pilot_path`, within its size limit).

    Raises:
        InvalidInput: no body, not a JSON object, or beyond the limits.
    """
    return _an_object(parse_json(raw) if raw.strip() else None)


def _an_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    return data


def validate(model: type[B], data: Any, prefix: str = "") -> B:
    """Raises: InvalidInput naming the first problems' fields, then how many more."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidInput(validation_message(e, prefix), errors=e.error_count()) from e


def lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a JSON-lines body, each at most `limit` bytes (never a whole huge line in
    memory).

    Raises:
        InvalidInput: a line over the limit, naming it.
    """
    number = 0
    while line := stream.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise InvalidInput(f"line {number} of the body is over {limit:,} bytes", line=number)
        yield line


@contextmanager
def submission_slot() -> Iterator[None]:
    """One of the few slots for parsing a submission.

    Raises:
        BackendUnavailable (503, retryable): every slot stayed busy for SUBMISSION_WAIT_S.
    """
    if not _parsing.acquire(timeout=SUBMISSION_WAIT_S):
        raise BackendUnavailable(
            f"busy: {SUBMISSIONS_AT_ONCE} submissions are being parsed; try again shortly"
        )
    try:
        yield
    finally:
        _parsing.release()
