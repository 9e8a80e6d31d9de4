"""data: outputs a pilot uploads when its job succeeded (stage-out).

One output is one request: the pilot streams the file's bytes, the server writes them to the
Blobs port under `outputs/<job>/<attempt>/<name>` as it reads them (never the whole file in
memory), counting its size and SHA-256, and answers with the blob's URI and what it counted.
The pilot compares those with what it sent and lists the outputs in the job's final report,
which stores them on the job.

Only the pilot holding the job's live attempt may upload, so a pilot that lost the job (its
attempt was requeued after a lost heartbeat) cannot write next to the new attempt's outputs.

Not idempotent, on purpose and by the Blobs port's shape: a key can only be appended to, so a
repeated upload would duplicate the data. The pilot therefore never retries an upload: a
failed one fails the attempt with STAGE_OUT_FAILED, and the job's next attempt writes under
keys of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from skypanda.domain.errors import Conflict, InvalidInput
from skypanda.domain.jobflow import output_key
from skypanda.domain.models import OutputFile, check_output_name
from skypanda.domain.states import JOB_LIVE
from skypanda.handlers.services import Services

__all__ = ["CHUNK_BYTES", "MAX_OUTPUT_BYTES", "store_output"]

MAX_OUTPUT_BYTES = 1024**3
"""Largest output accepted (1 GiB, as waitress's default request limit). On Cloud Functions
the platform's own request limit (32 MiB) is lower."""
CHUNK_BYTES = 8 * 1024**2
"""Bytes written per append: on Cloud Storage each append is one object, composed at the end."""


@runtime_checkable
class _Sealable(Protocol):
    """A Blobs implementation whose appended parts must be sealed into one object before its
    URI names a readable whole (GcsBlobs)."""

    def seal(self, key: str) -> None: ...


def check_holder(svc: Services, job_id: str, attempt: int, pilot_id: str) -> None:
    """The job's live attempt is `attempt`, held by `pilot_id`.

    Raises:
        NotFound: no such job.
        Conflict: the attempt is not live, or another pilot holds the job.
    """
    job = svc.jobs.get_job(job_id)
    if job.attempt != attempt or job.pilot_id != pilot_id or job.status not in JOB_LIVE:
        raise Conflict(
            f"job {job_id} attempt {attempt} is not held by pilot {pilot_id} "
            f"(job is {job.status}, attempt {job.attempt})",
            job_id=job_id,
        )


def store_output(
    svc: Services,
    *,
    job_id: str,
    attempt: int,
    pilot_id: str,
    name: str,
    chunks: Iterable[bytes],
) -> OutputFile:
    """Write one output of a live attempt to the blob store.

    Args:
        chunks: the file's bytes, read lazily (only after the checks passed).

    Returns:
        The output as stored: its URI, and the size and SHA-256 of the bytes received.

    Raises:
        InvalidInput: a bad name, or more than MAX_OUTPUT_BYTES (what was written stays
            under this attempt's key, unreferenced).
        NotFound: no such job.
        Conflict: the pilot does not hold this attempt (see `check_holder`).
        BackendUnavailable: the blob store failed.
    """
    try:
        check_output_name(name)
    except ValueError as e:
        raise InvalidInput(str(e), field="name") from e
    check_holder(svc, job_id, attempt, pilot_id)
    key = output_key(job_id, attempt, name)
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_OUTPUT_BYTES:
            raise InvalidInput(f"output {name!r} is larger than {MAX_OUTPUT_BYTES} bytes")
        digest.update(chunk)
        svc.blobs.append(key, chunk)
    if size == 0:
        svc.blobs.append(key, b"")  # an empty output still exists
    if isinstance(svc.blobs, _Sealable):
        svc.blobs.seal(key)
    return OutputFile(name=name, uri=svc.blobs.uri(key), size=size, sha256=digest.hexdigest())
