"""The Clock port on the system clock: the one clock every backend uses."""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()
