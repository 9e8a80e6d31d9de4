"""schemas/submission.avsc (registered on the submission topic by Terraform) describes what
`runtime.intake` reads and `skypanda publish` writes."""

from __future__ import annotations

import json
import typing

import pytest
from fastavro.validation import ValidationError

from skypanda.runtime.intake import SubmissionRecord, encode_submission
from tests.schemas import SCHEMAS, check_submission


def test_the_schema_has_the_fields_the_decoder_reads() -> None:
    schema = json.loads((SCHEMAS / "submission.avsc").read_text())
    assert [f["name"] for f in schema["fields"]] == list(SubmissionRecord.model_fields)
    (kind,) = (f["type"]["symbols"] for f in schema["fields"] if f["name"] == "kind")
    assert kind == list(typing.get_args(SubmissionRecord.model_fields["kind"].annotation))


@pytest.mark.parametrize("kind", ["task", "workflow"])
def test_what_publish_writes_fits_the_schema(kind: str) -> None:
    data = encode_submission(kind, "name: x\n", "application/yaml")
    assert check_submission(data) == {"kind": kind, "body": "name: x\n",
                                      "content_type": "application/yaml"}  # fmt: skip


@pytest.mark.parametrize(
    "record",
    [
        {"kind": "job", "body": "", "content_type": "application/yaml"},
        {"kind": "task", "content_type": "application/yaml"},
    ],
)
def test_a_record_of_another_shape_does_not_fit(record: dict[str, str]) -> None:
    with pytest.raises((ValidationError, ValueError, KeyError)):
        check_submission(json.dumps(record).encode())
