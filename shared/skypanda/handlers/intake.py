"""intake: a task or workflow another pipeline submitted by Pub/Sub message.

The transport has already decoded the message and verified its credential
(`runtime.intake.decode_submission`): the payload names the owner it verified and the
publisher's client key. This handler validates the document exactly as `skypanda submit FILE`
and `POST /v1/tasks` / `POST /v1/workflows` do, and stores it under an id derived from
(owner, key), so that one key makes one task or workflow however often its message arrives:

    redelivery (the function failed or was slow to acknowledge), several deliveries at once,
    and a publisher's own retries with the same key all find the first one stored.

A document that fails validation raises InvalidInput (not retryable): the pipeline marks the
event DEAD, the transport dead-letters it with the message and publishes a rejection to the
publisher (`runtime.cloudfn`). Nothing is stored for it.
"""

from __future__ import annotations

import hashlib
import logging

from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.events import Submission
from skypanda.domain.models import TaskSpec
from skypanda.domain.workflow import WorkflowSpec
from skypanda.formats.taskfile import parse_task, parse_workflow
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.handlers.workflow import submit_workflow

__all__ = ["CONTENT_TYPES", "KINDS", "MAX_BODY_BYTES", "handle", "parse", "submission_id"]

log = logging.getLogger(__name__)

KINDS = ("task", "workflow")
CONTENT_TYPES = ("application/yaml", "application/json")
"""YAML or JSON, parsed alike (JSON is YAML), as `skypanda submit FILE` reads a .json file."""
MAX_BODY_BYTES = 4 * 1024 * 1024
"""A document by message: as large as a YAML body over HTTPS (a Pub/Sub message holds 10 MB)."""


def submission_id(kind: str, owner: str, key: str) -> str:
    """The id of the task (`t...`) or workflow (`w...`) that `owner`'s `key` makes: 96 bits of
    a hash of both, so two owners' keys never meet and no other id is ever taken for it."""
    digest = hashlib.blake2b(f"{owner}\0{key}".encode(), digest_size=12).hexdigest()
    return f"{'w' if kind == 'workflow' else 't'}{digest}"


def parse(sub: Submission) -> TaskSpec | WorkflowSpec:
    """The submitted document, parsed and validated as a task or workflow file is.

    Raises:
        InvalidInput: unknown kind or content type, too large, not YAML/JSON, not valid (the
            message names field and line), or a workflow with a job graph (it needs its graph
            file: submit it over HTTPS).
    """
    if sub.kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, not {sub.kind!r}")
    if sub.content_type not in CONTENT_TYPES:
        raise InvalidInput(
            f"content_type must be one of {', '.join(CONTENT_TYPES)}, not {sub.content_type!r}"
        )
    size = len(sub.body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise InvalidInput(f"the body is {size:,} bytes; the limit is {MAX_BODY_BYTES:,}")
    source = f"submission {sub.key}"
    if sub.kind == "task":
        return parse_task(sub.body, source)
    spec = parse_workflow(sub.body, source)
    if spec.graph is not None:
        raise InvalidInput(
            f"{source}: workflow {spec.name} has a job graph ({spec.graph}); a message cannot "
            "carry it: submit it with `skypanda submit`"
        )
    return spec


def handle(svc: Services, sub: Submission) -> None:
    """Store the submission's task or workflow once per (owner, key).

    Raises:
        InvalidInput: the document is not valid (see `parse`, `handlers.submit.submit`,
            `handlers.workflow.submit_workflow`); nothing was stored.
    """
    ident = submission_id(sub.kind, sub.owner, sub.key)
    if _exists(svc, ident):  # a redelivery or a republished key: the first one stands
        log.info("submission %s of %s is %s, already stored", sub.key, sub.owner, ident)
        return
    spec = parse(sub)
    try:
        if isinstance(spec, TaskSpec):
            submit(svc, spec, sub.owner, task_id=ident)
        else:
            submit_workflow(svc, spec, sub.owner, workflow_id=ident)
    except InvalidInput:
        # Stores refuse an id that exists: another delivery of the same key stored it
        # meanwhile (it is then the one). Otherwise the document itself was refused.
        if _exists(svc, ident):
            return
        raise
    log.info("submission %s of %s stored as %s", sub.key, sub.owner, ident)


def _exists(svc: Services, ident: str) -> bool:
    try:
        if ident.startswith("w"):
            svc.workflows.get_workflow(ident)
        else:
            svc.tasks.get_task(ident, counts=False)
    except NotFound:
        return False
    return True
