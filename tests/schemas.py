"""The repository's message schemas (schemas/), for tests that check real messages."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
from fastavro.validation import validate

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def submission_schema() -> Any:
    return fastavro.parse_schema(json.loads((SCHEMAS / "submission.avsc").read_text()))


def check_submission(data: bytes) -> dict[str, Any]:
    """The record in a submission message's data, read as Pub/Sub reads it (Avro, JSON
    encoding), every field present. Raises when it does not fit."""
    schema = submission_schema()
    (record,) = list(fastavro.json_reader(io.StringIO(data.decode("utf-8")), schema))
    validate(json.loads(data), schema, raise_errors=True, strict=True)
    return dict(record)
