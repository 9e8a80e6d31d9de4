"""Riding out a server outage: how long the server has not answered, as a pilot's threads see it.

A restart of the server, a redeploy, a network cut: none is the jobs' fault, and none may cost
a job an attempt. So while the server does not answer, a pilot keeps its payloads running; its
status reports and their output wait in memory (the reporter's queue, one report per job, and
each job's bounded output buffer); heartbeats, reports and uploads are retried with back-off;
and it takes no new job. Only when the server has not answered for the outage budget
(`--outage-budget`, default 10 minutes: well over a restart) does the pilot give up: it stops
its payloads and ends `disconnected`, which the server counts neither as a failed attempt nor
in its scaler's back-off. When the server answers again, the next heartbeat reconciles: its
reply names the jobs the pilot must stop (those the server no longer gives it), and the server
requeues those it gave the pilot that the pilot does not hold.

Standard library only, Python 3.9 (the pilot ships as a zipapp).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("skypanda.pilot")

DEFAULT_OUTAGE_BUDGET_S = 600.0
RETRY_MAX_S = 5.0
"""Longest wait between two tries while the server is down: it is seen back within this."""
STOPPING_BUDGET_S = 5.0
"""Once the pilot is stopping (SIGTERM), it waits no longer than this for a server that is down."""


class Outage:
    """Since when the server has not answered any call; shared by every thread of a pilot.

    `budget_s` is how long an outage is ridden out (0: not at all); the pilot lowers it when it
    is told to stop. Plain attribute writes only, so that a signal handler may do that.
    """

    def __init__(self, budget_s: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_s = budget_s
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None

    def answered(self) -> None:
        """The server answered a call (whatever the status): it is up."""
        with self._lock:
            since, self._since = self._since, None
        if since is not None and self.budget_s:
            log.info("the server answers again, after %.1f s", self._clock() - since)

    def unanswered(self, reason: object) -> float:
        """A call found the server unreachable: how long it has been (0 for the first)."""
        now = self._clock()
        with self._lock:
            first = self._since is None
            if self._since is None:
                self._since = now
            since = self._since
        if first and self.budget_s:
            log.warning(
                "the server does not answer (%s): riding the outage out for up to %g s; "
                "payloads keep running, reports wait",
                reason,
                self.budget_s,
            )
        return now - since

    def down_for(self) -> float | None:
        """How long the server has not answered, or None while it answers."""
        with self._lock:
            since = self._since
        return None if since is None else self._clock() - since

    def over(self) -> bool:
        """Whether the server has not answered for the whole budget: time to give up."""
        down = self.down_for()
        return down is not None and down >= self.budget_s

    def wait(self, reason: object, stop: Callable[[], bool]) -> bool:
        """A call found the server down: wait a little (longer the longer it is down, at most
        RETRY_MAX_S; polling `stop`). True to try again; False once the server has been down
        for the whole budget, or when `stop()` said so."""
        down = self.unanswered(reason)
        if down >= self.budget_s:
            return False
        deadline = self._clock() + min(RETRY_MAX_S, max(0.5, down / 2), self.budget_s - down)
        while self._clock() < deadline:
            if stop():
                return False
            time.sleep(0.1)
        return True

    def stopping(self) -> None:
        """The pilot is stopping: wait for a server that is down only briefly (signal-safe)."""
        self.budget_s = min(self.budget_s, STOPPING_BUDGET_S)
