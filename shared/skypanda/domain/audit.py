"""The audit trail: every action a person (or a pipeline) asked of skypanda, who asked, what,
when, from where, and what came of it; readable by admins (`skypanda audit`).

An entry is written for each call of an acting route (submit, kill, retry, finish, pause,
resume, reassign, priority, queue changes, drains), whether it was done or refused: a refusal
(403, 409, 422 ...) is as telling as a success. A call that never authenticated (401) has no
one to name and is not written, so a flood of bad tokens cannot fill the trail.

Entry ids sort by time (`audit_id`): the stores list newest first by id and page with it as
the cursor. Entries expire after `RETENTION_S` (the sweep prunes them; on Firestore a TTL
policy on `expire_at` may do it too).
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from skypanda.domain.errors import InvalidInput, clip

RETENTION_S = 400 * 24 * 3600.0
"""How long an entry is kept: a year and a bit, so a yearly review still finds last year."""
MAX_DETAIL = 500
MAX_LIST = 500


class Outcome(StrEnum):
    DONE = "done"  # 2xx
    REFUSED = "refused"  # 4xx: forbidden, conflict, bad input, unknown id
    FAILED = "failed"  # 5xx


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    at: float
    actor: str
    roles: list[str]
    action: str  # the route's name: kill_task, create_workflow, apply_queues ...
    method: str
    path: str
    target_kind: str = ""  # task, workflow, queue, pilot
    target_id: str = ""
    outcome: Outcome
    status: int  # the HTTP status answered
    detail: str = ""  # the error message, or what was asked (a priority, a queue ...)
    remote: str = ""  # the client's address (through trusted proxies)
    agent: str = ""  # its User-Agent


def audit_id(at: float, after: str | None = None) -> str:
    """An id that sorts by time (microseconds), unique by its random tail; later than `after`
    (the previous id this writer made), so one writer's entries keep their order even when its
    clock stands still or steps back."""
    micros = round(at * 1_000_000)
    if after is not None:
        micros = max(micros, int(after.partition("-")[0]) + 1)
    return f"{micros:017d}-{secrets.token_hex(4)}"


def id_floor(at: float) -> str:
    """The smallest id an entry made at `at` or later can have (for `since` and pruning)."""
    return f"{round(at * 1_000_000):017d}-"


def check_cursor(before: str) -> str:
    """Raises: InvalidInput, when `before` is not an entry id."""
    if not re.fullmatch(r"\d{17}-[0-9a-f]{8}", before):
        raise InvalidInput(f"not an audit entry id: {clip(before, 40)!r}", field="before")
    return before


def outcome_of(status: int) -> Outcome:
    if status < 400:
        return Outcome.DONE
    return Outcome.REFUSED if status < 500 else Outcome.FAILED
