"""How many jobs a pilot asks for at once, and how many it gives back (standard library only,
like all of the pilot).

A pilot holds more jobs than it has slots only while its jobs are short (a prefetch: a short job
ends before an acquire's round trip would bring the next). Once a payload runs long, a job held
behind it waits while another pilot, or one the scaler launches for it, could run it: the pilot
then asks for no more than its free slots and gives back what it holds beyond them.
"""

from __future__ import annotations

from collections.abc import Sequence

PREFETCH_WINDOW_S = 0.5
PREFETCH_BELOW_S = 1.0
"""Hold a second round of jobs only while jobs take less than this (see acquire_size), and
while no running payload has run this long."""
GIVE_BACK_AFTER_S = 2.0
"""Give back the jobs held beyond the free slots once a running payload has run this long.
Later than PREFETCH_BELOW_S: a job just past the short regime would otherwise cost each job
held behind it a second attempt, where waiting a moment more would have done."""


def prefetching(mean_runtime_s: float | None, longest_running_s: float) -> bool:
    """Whether the pilot is in the short-job regime: recent jobs took less than
    PREFETCH_BELOW_S on average and no running payload has run that long."""
    if longest_running_s >= PREFETCH_BELOW_S:
        return False
    return mean_runtime_s is not None and mean_runtime_s < PREFETCH_BELOW_S


def acquire_size(
    *,
    held: int,
    slots: int,
    per_acquire: int,
    mean_runtime_s: float | None,
    remaining: int | None,
    longest_running_s: float = 0.0,
) -> int:
    """How many jobs to ask the server for now.

    The pilot holds up to `slots` jobs while jobs are long, so no job waits here behind long
    ones while another pilot could run it. While recent jobs were short (and no running payload
    has passed PREFETCH_BELOW_S: `longest_running_s`) it holds about PREFETCH_WINDOW_S of work
    per slot (at least two jobs, at most `per_acquire` per call): short jobs finish faster than
    an acquire round trip, and one acquire of many jobs costs the server little more than an
    acquire of one. That stock is refilled only once it is half used (while every slot still
    has work), so acquires come in a few large batches rather than one small one per finished
    job.
    """
    target = slots
    if prefetching(mean_runtime_s, longest_running_s):
        assert mean_runtime_s is not None  # (prefetching says so)
        per_slot = max(2, int(PREFETCH_WINDOW_S / max(mean_runtime_s, 1e-3)))
        target = slots * per_slot
        if held >= slots and held * 2 > target:
            return 0
    n = min(target - held, per_acquire)
    if remaining is not None:
        n = min(n, remaining)
    return max(n, 0)


def give_back_count(*, waiting: int, running: int, slots: int, longest_running_s: float) -> int:
    """How many of the `waiting` jobs (held, not started) to give back to the queue now.

    None while the running payloads are all short (the prefetch is working as meant). Once one
    has run GIVE_BACK_AFTER_S, the pilot keeps only what its free slots (`slots` less the
    `running` payloads) start at once; the rest would wait behind payloads of unknown length.
    """
    if longest_running_s < GIVE_BACK_AFTER_S:
        return 0
    return max(0, waiting - max(0, slots - running))


def acquire_plan(
    *,
    held: int,
    slots: int,
    per_acquire: int,
    mean_runtime_s: float | None,
    remaining: int | None,
    longest_running_s: float,
    cores: int,
    held_cores: int,
) -> tuple[int, int | None]:
    """How many jobs to ask for now, and the most cores one of them may ask for (None: no
    limit but the pilot's own cores).

    While the pilot prefetches (`prefetching`), exactly `acquire_size`. Otherwise only jobs
    that fit the cores free now (`cores` less the `held_cores` of the jobs it holds, running
    or waiting to start, and of those asked for): each takes a core at least, so no more jobs
    than free cores, and none at all when no core is free (a busy pilot: no acquire, no
    long-poll; the scaler sees the jobs waiting and launches a pilot for them).
    """
    n = acquire_size(
        held=held,
        slots=slots,
        per_acquire=per_acquire,
        mean_runtime_s=mean_runtime_s,
        remaining=remaining,
        longest_running_s=longest_running_s,
    )
    if prefetching(mean_runtime_s, longest_running_s):
        return n, None
    free = max(0, cores - held_cores)
    n = min(n, free)
    return n, (free if n else None)


def cores_give_back(
    *, waiting_cores: Sequence[int], free_cores: int, longest_running_s: float
) -> list[int]:
    """Which of the waiting jobs (held, not started; each by the cores it needs, in the order
    acquired) to give back now, as their indices.

    None while the running payloads are all short (GIVE_BACK_AFTER_S, as `give_back_count`).
    Once one has run that long, the pilot keeps, in order, the jobs that fit in the cores its
    running payloads leave free (`free_cores`); the others would wait for a running payload of
    unknown length to end. With 1-core jobs this gives back no more than `give_back_count`.
    """
    if longest_running_s < GIVE_BACK_AFTER_S:
        return []
    back: list[int] = []
    for i, need in enumerate(waiting_cores):
        if need <= free_cores:
            free_cores -= need
        else:
            back.append(i)
    return back
