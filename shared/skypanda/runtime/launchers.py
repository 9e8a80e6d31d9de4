"""One Launcher for all queues: each queue's pilots go to the launcher its definition names
(`launcher.kind`: local processes, Cloud Run, GKE). Launchers are made when first needed, by
the factories the runtime gives (`runtime.gcp` has Cloud Run's and GKE's), so a deployment
without a GKE queue never loads the kubernetes client, and the embedded system never loads
a Google client.
"""

from __future__ import annotations

from collections.abc import Callable

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Job, Queue
from skypanda.ports import LaunchedPilot, Launcher

Factory = Callable[[Queue], Launcher]


class QueueLaunchers:
    """The Launcher port over several launchers, chosen per queue by `queue.launcher.kind`."""

    def __init__(
        self, factories: dict[str, Factory], made: dict[str, Launcher] | None = None
    ) -> None:
        """`made`: launchers already at hand (the embedded system's local one), so a pilot of
        an earlier run can be stopped before this run launches anything."""
        self._factories = factories
        self._made: dict[str, Launcher] = dict(made or {})
        self._owner: dict[str, str] = {}  # pilot id -> launcher kind

    def _for(self, queue: Queue) -> tuple[str, Launcher]:
        kind = queue.launcher.kind
        if kind not in self._made:
            factory = self._factories.get(kind)
            if factory is None:
                raise InvalidInput(
                    f"queue {queue.name}: no {kind} launcher here "
                    f"(available: {', '.join(sorted(self._factories))})"
                )
            self._made[kind] = factory(queue)
        return kind, self._made[kind]

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        kind, launcher = self._for(queue)
        ref = launcher.launch(queue, pilot_id, job)
        self._owner[pilot_id] = kind
        return ref

    def list(self) -> list[LaunchedPilot]:
        return [seen for launcher in self._made.values() for seen in launcher.list()]

    def stop(self, pilot_id: str) -> None:
        """Stop through the launcher that started the pilot; one this process did not start
        (it restarted since) is asked of every launcher made (each leaves alone what is not
        its own)."""
        kind = self._owner.get(pilot_id)
        if kind is not None:
            self._made[kind].stop(pilot_id)
            return
        for launcher in list(self._made.values()):
            launcher.stop(pilot_id)

    def forget(self, pilot_id: str) -> None:
        kind = self._owner.pop(pilot_id, None)
        forget = getattr(self._made.get(kind or ""), "forget", None)
        if forget is not None:
            forget(pilot_id)
