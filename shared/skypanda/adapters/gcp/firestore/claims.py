"""Dispatch on Firestore: claims (DESIGN law 4), and what the scaler and fair share read of a
queue's jobs (activated jobs in dispatch order, their count, owners' loads)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import (
    ACTIVATED,
    FirestoreBase,
    Snapshot,
    count,
    eq,
    fields,
    is_in,
    where,
)
from skypanda.adapters.gcp.firestore.plans import choose, claim_window
from skypanda.domain.errors import BackendUnavailable
from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.models import Job, Resources
from skypanda.domain.states import JOB_LIVE
from skypanda.ports import OWNERS_SCANNED, WAITING_COUNT_CAP

CLAIM_ROUNDS = 32  # claim commits per call at most (each may follow a query of candidates)
CLAIM_TURN_WAIT_S = 5.0
"""How long a claim waits for its turn behind this process's other claims on its queue."""


class ClaimPart(FirestoreBase):
    """Claims and the queue-wide reads of jobs."""

    def claim_jobs(
        self,
        queue: str,
        pilot_id: str,
        n: int,
        capacity: Resources,
        now: float,
        owner: str | None = None,
    ) -> list[Job]:
        """Claim in rounds: query a window of candidates, pick (`plans.choose`: the head of
        the window, or after a lost race a random sample), commit the picks compare-and-set
        (DESIGN law 4). Candidates read and not tried yet are tried before the next query:
        each query bills a read per candidate it returns, a commit of picks bills only the
        picks it wins, and each pick's precondition checks that its job is still as read.

        Claims on one queue from this process take turns (`_turn`): a claim queries only after
        the one before it committed, so it reads fresh candidates instead of the same head of
        the queue, which it would pay for and then lose. Only claims from other processes race.
        """
        with self._turn(queue):
            return self._claim(queue, pilot_id, n, capacity, now, owner)

    @contextmanager
    def _turn(self, queue: str) -> Iterator[None]:
        """Wait (up to CLAIM_TURN_WAIT_S) for this process's other claims on `queue`. Only an
        economy: past the wait a claim goes ahead and races, as claims from other processes
        always may (picks are compare-and-set)."""
        with self._stats_lock:
            lock = self._claim_turns.setdefault(queue, threading.Lock())
        mine = lock.acquire(timeout=CLAIM_TURN_WAIT_S)
        try:
            yield
        finally:
            if mine:
                lock.release()

    def _claim(
        self,
        queue: str,
        pilot_id: str,
        n: int,
        capacity: Resources,
        now: float,
        owner: str | None,
    ) -> list[Job]:
        claimed: list[Job] = []
        losses = 0
        spare: list[Snapshot] = []  # candidates read and not tried yet
        complete = False  # the last query returned every candidate there was
        for _ in range(CLAIM_ROUNDS):
            need = n - len(claimed)
            if need <= 0:
                break
            if not spare:
                limit = claim_window(need, losses)
                spare = self._claim_window(queue, capacity, limit, owner)
                if not spare:
                    break
                complete = len(spare) < limit
            picks = choose(spare, need, losses)
            picked = {s.id for s in picks}
            spare = [s for s in spare if s.id not in picked]
            won, lost = self._claim_picks(picks, pilot_id, now)
            self._count_claim(lost=lost)
            claimed.extend(won)
            if lost:
                losses += 1
                # Back off exponentially (capped) with jitter: under a crowd of claimers a
                # short fixed pause just lines everyone up for the next collision.
                time.sleep(random.uniform(0, min(0.2, 0.005 * 2**losses)))
                continue
            if complete and not spare:
                break  # won every candidate there was
        else:
            if not claimed and losses:
                # Not "no work": telling the pilot so would idle it. It may ask again.
                raise BackendUnavailable(f"claims on queue {queue} kept losing races; try again")
        return sorted(claimed, key=lambda j: (-j.priority, j.created_at, j.index))

    def _count_claim(self, *, lost: bool) -> None:
        with self._stats_lock:
            self.claim_stats["commits"] += 1
            self.claim_stats["conflicts"] += int(lost)

    def _claim_window(
        self, queue: str, capacity: Resources, limit: int, owner: str | None = None
    ) -> list[Snapshot]:
        """The first `limit` activated jobs of `queue` (of `owner`, when given) that fit
        `capacity`, in dispatch order."""
        query = where(
            self._jobs,
            eq("queue", queue),
            eq("status", ACTIVATED),
            None if owner is None else eq("owner", owner),
            FieldFilter("memory_mb", "<=", capacity.memory_mb),
            FieldFilter("cores", "<=", capacity.cores),
        ).order_by("priority", direction=firestore.Query.DESCENDING)
        query = query.order_by("created_at").order_by("index").limit(limit)
        return self._stream("claim_jobs", query)

    def _claim_picks(
        self, picks: list[Snapshot], pilot_id: str, now: float
    ) -> tuple[list[Job], bool]:
        """Send `picks` to the pilot: the jobs won, and whether any pick was lost to a race.

        Each job write carries the precondition "last updated when we read it" (a compare-and-
        set on the document version, checked by Firestore) and goes in one BatchWrite, which
        applies each write on its own: a pick another pilot took fails alone instead of failing
        the whole claim, and no locks are taken. That write is the whole claim: the attempt's
        record is the job's own fields until a change ends the attempt (`attempts`).
        """
        sent = [codec.sent_fields(pilot_id, now, fields(s).get("updated_at")) for s in picks]
        bulk = BulkWriteBatch(self._db)
        for snap, doc in zip(picks, sent, strict=True):
            unchanged = self._db.write_option(last_update_time=snap.update_time)
            bulk.update(snap.reference, doc, option=unchanged)
        with self._backend("claim_jobs"):
            response = bulk.commit()
        won: list[Job] = []
        for snap, doc, status, result in zip(
            picks, sent, response.status, response.write_results, strict=True
        ):
            if status.code == 0:
                job = codec.job_from(snap.id, {**fields(snap), **doc})
                self._remember(job.id, result.update_time, str(job.status), job.attempt)
                won.append(job)
        return won, len(won) < len(picks)

    # -- a queue's jobs ----------------------------------------------------------------------------
    def waiting_owners(self, queue: str, limit: int) -> list[str]:
        """A skip scan: one single-document query per owner, ordered by owner (and, when fewer
        than `limit` owners wait, one more that finds none: a billed read)."""
        activated = where(self._jobs, eq("queue", queue), eq("status", ACTIVATED))
        owners: list[str] = []
        while len(owners) < limit:
            after = None if not owners else FieldFilter("owner", ">", owners[-1])
            query = where(activated, after).order_by("owner").select(["owner"]).limit(1)
            found = self._stream("waiting_owners", query)
            if not found:
                break
            owners.append(str(fields(found[0])["owner"]))
        return owners

    def owner_loads(self, queue: str) -> dict[str, OwnerLoad]:
        """Live jobs read by owner only (a few: what the pilots hold); owners waiting found by
        `waiting_owners`, each counted by an aggregation capped at WAITING_COUNT_CAP."""
        live = where(self._jobs, eq("queue", queue), is_in("status", JOB_LIVE))
        running: dict[str, int] = {}
        for snap in self._stream("owner_loads", live.select(["owner"])):
            owner = str(fields(snap).get("owner", "local"))
            running[owner] = running.get(owner, 0) + 1
        activated = where(self._jobs, eq("queue", queue), eq("status", ACTIVATED))
        waiting: dict[str, int] = {}
        for owner in self.waiting_owners(queue, OWNERS_SCANNED):
            mine = where(activated, eq("owner", owner)).limit(WAITING_COUNT_CAP)
            with self._backend("owner_loads"):
                waiting[owner] = count(mine)
        loads = {o: OwnerLoad(running.get(o, 0), n) for o, n in waiting.items()}
        for owner, n in running.items():
            loads.setdefault(owner, OwnerLoad(n, 0))
        return loads

    def list_activated(self, queue: str, limit: int) -> list[Job]:
        query = where(self._jobs, eq("queue", queue), eq("status", ACTIVATED))
        query = query.order_by("priority", direction=firestore.Query.DESCENDING)
        query = query.order_by("created_at").order_by("index").limit(limit)
        return [codec.job_from(s.id, fields(s)) for s in self._stream("list_activated", query)]

    def count_activated(self, queue: str) -> int:
        query = where(self._jobs, eq("queue", queue), eq("status", ACTIVATED))
        with self._backend("count_activated"):
            return count(query)
