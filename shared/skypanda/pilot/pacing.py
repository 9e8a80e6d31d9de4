"""How many jobs a pilot asks for at once, and how many it gives back (standard library only,
like all of the pilot).

A pilot holds more jobs than it has slots only while its jobs are short (a prefetch: a short job
ends before an acquire's round trip would bring the next). Once a payload runs long, a job held
behind it waits while another pilot, or one the scaler launches for it, could run it: the pilot
then asks for no more than its free slots and gives back what it holds beyond them.
"""

from __future__ import annotations

PREFETCH_WINDOW_S = 0.5
PREFETCH_BELOW_S = 1.0
"""Hold a second round of jobs only while jobs take less than this (see acquire_size), and
while no running payload has run this long."""
GIVE_BACK_AFTER_S = 2.0
"""Give back the jobs held beyond the free slots once a running payload has run this long.
Later than PREFETCH_BELOW_S: a job just past the short regime would otherwise cost each job
held behind it a second attempt, where waiting a moment more would have done."""


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
    short = longest_running_s < PREFETCH_BELOW_S
    if short and mean_runtime_s is not None and mean_runtime_s < PREFETCH_BELOW_S:
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
