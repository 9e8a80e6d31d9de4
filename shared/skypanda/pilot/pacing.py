"""How many jobs a pilot asks for at once (standard library only, like all of the pilot)."""

from __future__ import annotations

PREFETCH_WINDOW_S = 0.5
PREFETCH_BELOW_S = 1.0
"""Hold a second round of jobs only while jobs take less than this (see acquire_size)."""


def acquire_size(
    *,
    held: int,
    slots: int,
    per_acquire: int,
    mean_runtime_s: float | None,
    remaining: int | None,
) -> int:
    """How many jobs to ask the server for now.

    The pilot holds up to `slots` jobs while jobs are long, so no job waits here behind long
    ones while another pilot could run it. While recent jobs were short it holds about
    PREFETCH_WINDOW_S of work per slot (at least two jobs, at most `per_acquire` per call):
    short jobs finish faster than an acquire round trip, and one acquire of many jobs costs
    the server little more than an acquire of one. That stock is refilled only once it is
    half used (while every slot still has work), so acquires come in a few large batches
    rather than one small one per finished job.
    """
    target = slots
    if mean_runtime_s is not None and mean_runtime_s < PREFETCH_BELOW_S:
        per_slot = max(2, int(PREFETCH_WINDOW_S / max(mean_runtime_s, 1e-3)))
        target = slots * per_slot
        if held >= slots and held * 2 > target:
            return 0
    n = min(target - held, per_acquire)
    if remaining is not None:
        n = min(n, remaining)
    return max(n, 0)
