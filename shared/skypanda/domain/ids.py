"""Identifiers. Job ids are derived from (task id, index) but not sequential.

Firestore splits key ranges by load; monotonically increasing ids put every write on one split
(DESIGN law 5). A job id is its task id plus a bijective scramble of its index: unique within the
task, deterministic (a re-run of a split writes the same ids, which makes splitting idempotent),
and spread evenly over the key space.
"""

from __future__ import annotations

import hashlib

_BITS = 48
_MASK = (1 << _BITS) - 1
_ODD = 0x9E3779B97F4B  # odd, so multiplication modulo 2**48 is a bijection
_INV = pow(_ODD, -1, 1 << _BITS)


def scramble(index: int) -> int:
    x = (index * _ODD) & _MASK
    return x ^ (x >> 24)


def unscramble(value: int) -> int:
    x = value ^ (value >> 24)
    return (x * _INV) & _MASK


def job_id(task_id: str, index: int) -> str:
    """The id of job `index` of a task: `<task id>-<12 hex digits>`."""
    if not 0 <= index <= _MASK:
        raise ValueError(f"job index out of range: {index}")
    return f"{task_id}-{scramble(index):012x}"


def workflow_task_id(workflow_id: str, name: str, iteration: int) -> str:
    """The id of a workflow's task (one iteration of it): deterministic, so making it twice
    (a redelivered event, two planners at once) finds the first; hashed, so not sequential."""
    digest = hashlib.blake2b(f"{workflow_id}/{name}/{iteration}".encode(), digest_size=6)
    return f"t{digest.hexdigest()}"
