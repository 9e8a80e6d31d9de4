"""The pure decisions of the Firestore store: which claim candidates to pick, outbox sequence
numbers, how writes are cut into commits, and what a run of job changes writes.

No I/O: the store's modules call these with what they read and commit what they return.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from skypanda.adapters.gcp.firestore.codec import (
    MAX_BYTES,
    MAX_WRITES,
    Doc,
    attempt_doc,
    attempt_key,
    job_doc,
)
from skypanda.domain.events import Event
from skypanda.domain.models import Attempt, Job
from skypanda.domain.states import JOB_FINAL, JOB_LIVE
from skypanda.ports import JobChange

T = TypeVar("T")


# -- claims ----------------------------------------------------------------------------------------
def choose(window: Sequence[T], need: int, losses: int) -> list[T]:
    """Which candidates of a claim's window to commit: the head of the window (dispatch order)
    until a race was lost, then a random `need` of it, so that competing pilots spread over the
    window instead of colliding on its head. (Picks are committed each on its own, so a lost
    pick costs nothing but itself: no reason to commit fewer than `need`.)"""
    if not losses:
        return list(window[:need])
    return random.sample(list(window), min(len(window), need))


def claim_window(n: int, losses: int = 0) -> int:
    """How many candidates a claim of `n` jobs queries (each one returned is a billed read).

    Exactly `n` until a race was lost: the first picks are the head anyway, so more would be
    read for nothing by a lone pilot. After a lost race, room to spread competing pilots,
    wider after each further loss (more pilots compete than the window spreads), bounded so
    that a claim does not read far past what it takes."""
    if not losses:
        return n
    return n + min(max(n // 4, 2) << min(losses, 6), 200)


# -- outbox ----------------------------------------------------------------------------------------
class SeqSource:
    """Outbox sequence numbers: ints that grow with time, strictly within this process.

    Firestore has no autoincrement, and a shared counter document would be a hot document
    (DESIGN law 5). A seq is the wall clock in microseconds times 1000 plus three random digits,
    raised if needed to exceed the last one this process handed out: strictly increasing per
    process, ordered by time across processes (up to clock skew), and colliding across processes
    only within the same microsecond and with the same random digits.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        candidate = time.time_ns() // 1000 * 1000 + random.randrange(1000)
        with self._lock:
            self._last = max(self._last + 1, candidate)
            return self._last


SEQS = SeqSource()


# -- chunking --------------------------------------------------------------------------------------
def chunks(
    docs: Iterable[tuple[str, Doc]], writes_per_doc: int = 1, *, room: int = 0
) -> Iterator[list[tuple[str, Doc]]]:
    """(id, doc) pairs in runs that fit one commit: at most MAX_WRITES writes and ~MAX_BYTES,
    leaving room for `room` more small writes."""
    run: list[tuple[str, Doc]] = []
    size = 0
    for doc_id, doc in docs:
        approx = len(doc_id) + len(json.dumps(doc, default=str)) + 64
        full = (len(run) + 1) * writes_per_doc + room > MAX_WRITES
        if run and (full or size + approx > MAX_BYTES):
            yield run
            run, size = [], 0
        run.append((doc_id, doc))
        size += approx
    if run:
        yield run


def change_runs(changes: Sequence[JobChange]) -> Iterator[list[JobChange]]:
    """Job changes in runs whose writes (job, attempt records, events) fit one commit."""
    run: list[JobChange] = []
    writes = 0
    for ch in changes:
        record = ch.attempt.attempt if ch.attempt is not None else None
        unrecorded_end = ch.before.status in JOB_LIVE and record != ch.before.attempt
        cost = 2 + int(unrecorded_end) + len(ch.events)  # see plan_changes
        if run and writes + cost > MAX_WRITES:
            yield run
            run, writes = [], 0
        run.append(ch)
        writes += cost
    if run:
        yield run


# -- job changes -----------------------------------------------------------------------------------
@dataclass
class ChangePlan:
    """What a run of job changes writes, given the jobs' stored (status, attempt, kill flag)."""

    won: list[bool] = field(default_factory=list)  # one per change, in order
    jobs: dict[str, Doc] = field(default_factory=dict)  # job id -> fields to update
    attempts: dict[str, Doc] = field(default_factory=dict)  # attempt key -> record
    events: dict[str, Event] = field(default_factory=dict)  # the winners' events, by id


def plan_changes(
    changes: Sequence[JobChange], state: Mapping[str, tuple[str, int, bool]]
) -> ChangePlan:
    """Apply `changes` in order, as if one after the other, to jobs whose stored
    (status, attempt, kill_requested) is `state` (a job not in it does not exist): which win,
    and what to write. The kill flag is compared too: a change computed before a kill was
    requested would otherwise write the flag back to false and lose the kill.

    A job is written once, as its last winning change left it. Attempt records: the record of
    the job's current attempt, live or ended, is kept in the job document (`live_attempt`),
    which is written anyway; a record goes to `attempts` only when its attempt is replaced by
    a new one (a requeue, a retry). So a job that runs once costs no attempt write at all,
    and the job document holds one record at most. A change that ends or replaces a live
    attempt without giving its record gets one made from the job as it was (never the case
    for jobflow's changes, which always give it).
    """
    plan = ChangePlan()
    state = dict(state)
    final: dict[str, Job] = {}
    kept: dict[str, Attempt | None] = {}  # job id -> record to keep; absent: keep the stored
    for ch in changes:
        before, after = ch.before, ch.after
        ok = state.get(before.id) == (str(before.status), before.attempt, before.kill_requested)
        plan.won.append(ok)
        if not ok:
            continue
        state[before.id] = (str(after.status), after.attempt, after.kill_requested)
        final[before.id] = after
        for e in ch.events:
            plan.events.setdefault(e.id, e)
        _place_records(ch, kept, plan.attempts)
    for job_id, job in final.items():
        doc = job_doc(job, kept.get(job_id))
        if job_id not in kept:
            del doc["live_attempt"]  # unchanged: keep the record stored with the job
        plan.jobs[job_id] = doc
    return plan


def _place_records(ch: JobChange, kept: dict[str, Attempt | None], out: dict[str, Doc]) -> None:
    """Where a winning change's attempt records go: the current attempt's kept with the job
    (`kept`), a replaced attempt's out to `attempts` (`out`)."""
    before, after, record = ch.before, ch.after, ch.attempt
    if record is not None and record.attempt == after.attempt:
        kept[before.id] = record
    elif record is not None:
        out[attempt_key(record)] = attempt_doc(record)
    if after.attempt != before.attempt:  # the attempt is replaced: its record goes out
        old, mine = f"{before.id}:{before.attempt}", kept.get(before.id)
        if old in out:
            pass
        elif mine is not None and mine.attempt == before.attempt:
            out[old] = attempt_doc(mine)
        elif before.status in JOB_LIVE or before.status in JOB_FINAL:  # it ran
            out[old] = attempt_doc(_attempt_as_read(before))
        kept[before.id] = None
    elif before.status in JOB_LIVE and after.status not in JOB_LIVE and before.id not in kept:
        kept[before.id] = _attempt_as_read(before)  # it ended, and no record was given


def _attempt_as_read(job: Job) -> Attempt:
    return Attempt(
        job_id=job.id, attempt=job.attempt, pilot_id=job.pilot_id, status=job.status,
        started_at=job.started_at, ended_at=job.ended_at, exit_code=job.exit_code,
        error_code=job.error_code, error_diag=job.error_diag, log_uri=job.log_uri,
        max_rss_mb=job.max_rss_mb,
    )  # fmt: skip
