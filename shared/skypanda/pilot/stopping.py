"""The pilot's stop budget: what it does between SIGTERM and the SIGKILL that follows.

A launcher that knows its platform's grace tells the pilot (`--stop-grace`, or
$SKYPANDA_STOP_GRACE): a GKE pod on a spot VM gets 15 s, whatever its spec asks for. Within it
the pilot must kill its payloads, report their jobs (preempted: requeued without counting an
attempt) and end its record; a pilot SIGKILLed first loses its reports, and its jobs wait for
the heartbeat timeout and count an attempt. So from SIGTERM on every wait is cut to fit:

    SIGTERM   payloads: SIGTERM, SIGKILL after kill_s   reports   /end        exit
    |<------------------------------- usable_s ----------------------------->|<- margin ->|

Without a grace (a local pilot, Ctrl-C) nothing is cut: the pilot stops as it always did.

Standard library only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import overload

MARGIN_S = 2.0
"""Kept back for the interpreter's exit and the platform's own lateness (at most 20 %)."""
KILL_SHARE = 0.25
"""The payloads' own grace (SIGTERM to SIGKILL) takes at most this share of the budget."""
END_RESERVE_S = 3.0
"""Kept for the /end call once the reports are flushed (at most half of what is left)."""


class StopBudget:
    """How long each step of stopping may take, given the grace (None: no limit).

    `start()` is a single assignment, so a signal handler may call it."""

    def __init__(
        self,
        grace_s: float | None,
        kill_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`kill_s`: the payloads' grace when there is no limit (runner.KILL_GRACE_S)."""
        self.grace_s = grace_s
        self._default_kill_s = kill_s
        self._clock = clock
        self._started: float | None = None

    @property
    def usable_s(self) -> float | None:
        """Seconds from SIGTERM to exit, the margin kept back."""
        if self.grace_s is None:
            return None
        return self.grace_s - min(MARGIN_S, self.grace_s * 0.2)

    @property
    def kill_s(self) -> float:
        """Seconds a payload gets between SIGTERM and SIGKILL."""
        usable = self.usable_s
        return (
            self._default_kill_s
            if usable is None
            else min(self._default_kill_s, usable * KILL_SHARE)
        )

    def start(self) -> None:
        """SIGTERM came: the budget runs from now (the first call counts)."""
        if self._started is None:
            self._started = self._clock()

    def left(self) -> float | None:
        """Seconds left until the pilot must have exited; None: not stopping, or no limit."""
        usable = self.usable_s
        if usable is None or self._started is None:
            return None
        return max(0.0, usable - (self._clock() - self._started))

    @overload
    def cap(self, seconds: float, *, keep_s: float = 0.0) -> float: ...
    @overload
    def cap(self, seconds: None, *, keep_s: float = 0.0) -> float | None: ...

    def cap(self, seconds: float | None, *, keep_s: float = 0.0) -> float | None:
        """`seconds` (None: unbounded) cut to what is left, less `keep_s` kept for the steps
        after this one (at most half of what is left). Unchanged when not stopping within a
        grace."""
        left = self.left()
        if left is None:
            return seconds
        left -= min(keep_s, left / 2)
        return left if seconds is None else min(seconds, left)
