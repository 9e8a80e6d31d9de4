"""How a job ended without (or after) its payload, as a PayloadResult; names for codes and
workdirs.

Standard library only (plus `skypanda.wire.codes`; the pilot ships as a zipapp).
"""

from __future__ import annotations

import dataclasses
import re
import time

from skypanda.pilot.runner import PayloadResult
from skypanda.wire.codes import ErrorCode

MAX_DIAG_CHARS = 1000


def failed(code: int, diag: str, started_at: float) -> PayloadResult:
    """A job that failed before or without its payload."""
    return PayloadResult("failed", None, code, diag[:MAX_DIAG_CHARS], started_at, time.time())


def after(result: PayloadResult, code: int, diag: str) -> PayloadResult:
    """A payload's result, failed by what came after it (its stage-out)."""
    return dataclasses.replace(
        result,
        status="failed",
        error_code=code,
        error_diag=diag[:MAX_DIAG_CHARS],
        ended_at=time.time(),
    )


def safe_name(name: str) -> str:
    """`name` as a file name: other characters replaced, at most 200 of them."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:200] or "job"


def code_name(code: int) -> str:
    """An error code's name (e.g. SIGTERM), or its number when it has none."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)
