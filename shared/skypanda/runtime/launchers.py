"""One Launcher for all queues: each queue's pilots go to the launcher its definition names
(`launcher.kind`: local processes, Cloud Run, GKE). Launchers are made when first needed, by
the factories the runtime gives (`runtime.gcp` has Cloud Run's and GKE's), so a deployment
without a GKE queue never loads the kubernetes client, and the embedded system never loads
a Google client.

A launcher is made per kind and place: GKE queues on different clusters (or kubeconfig
contexts) get a launcher each, so no queue's pilots land on another queue's cluster.

One queue's launcher failing must not stop the others: whatever a factory or a launcher
raises (a kubernetes ConfigException, a network error) becomes a skypanda error naming the
queue, which the scaler records as that queue's failure; a launcher that cannot be made is not
kept, so the next scaling tries again; and `list` leaves out (and logs) a launcher that cannot
list, so the scaler still reconciles the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from skypanda.domain.errors import BackendUnavailable, InvalidInput, SkypandaError
from skypanda.domain.models import Job, Queue
from skypanda.ports import LaunchedPilot, Launcher

Factory = Callable[[Queue], Launcher]

log = logging.getLogger(__name__)


def launcher_key(queue: Queue) -> str:
    """Which launcher serves a queue: its kind, and for a GKE queue its cluster or context."""
    spec = queue.launcher
    place = getattr(spec, "cluster", None) or getattr(spec, "context", None)
    return f"{spec.kind}:{place}" if place else spec.kind


def _queue_error(queue: Queue, what: str, e: Exception) -> SkypandaError:
    """`e` as a skypanda error naming the queue (a skypanda error is kept as it is)."""
    if isinstance(e, SkypandaError):
        return e
    return BackendUnavailable(
        f"queue {queue.name}: {what}: {type(e).__name__}: {e}", queue=queue.name
    )


class QueueLaunchers:
    """The Launcher port over several launchers, chosen per queue by `launcher_key`."""

    def __init__(
        self, factories: dict[str, Factory], made: dict[str, Launcher] | None = None
    ) -> None:
        """`made`: launchers already at hand (the embedded system's local one), so a pilot of
        an earlier run can be stopped before this run launches anything."""
        self._factories = factories
        self._made: dict[str, Launcher] = dict(made or {})
        self._owner: dict[str, str] = {}  # pilot id -> launcher key

    def _for(self, queue: Queue) -> tuple[str, Launcher]:
        key, kind = launcher_key(queue), queue.launcher.kind
        if key not in self._made:
            factory = self._factories.get(kind)
            if factory is None:
                raise InvalidInput(
                    f"queue {queue.name}: no {kind} launcher here "
                    f"(available: {', '.join(sorted(self._factories))})"
                )
            try:
                self._made[key] = factory(queue)
            except Exception as e:  # kept out of the cache: the next scaling tries again
                raise _queue_error(queue, f"cannot make its {kind} launcher", e) from e
        return key, self._made[key]

    def prepare(self, queues: list[Queue]) -> None:
        """Make the launchers of `queues` now, so that `list` and `stop` see the pilots an
        earlier process launched (a Cloud Function's cold start) before anything is launched.
        A queue whose launcher cannot be made is logged and skipped (its launch says why)."""
        for queue in queues:
            if queue.launcher.kind not in self._factories:
                continue
            try:
                self._for(queue)
            except SkypandaError as e:
                log.warning("%s", e.message)

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        """Raises:
        SkypandaError: the queue's launcher cannot be made, or failed (named in the message).
        """
        key, launcher = self._for(queue)
        try:
            ref = launcher.launch(queue, pilot_id, job)
        except Exception as e:
            raise _queue_error(queue, f"{queue.launcher.kind} launch failed", e) from e
        self._owner[pilot_id] = key
        return ref

    def list(self) -> list[LaunchedPilot]:
        """Every launcher's pilots; a launcher that fails to list is logged and left out."""
        seen: list[LaunchedPilot] = []
        for key, launcher in list(self._made.items()):
            try:
                seen.extend(launcher.list())
            except Exception as e:  # its pilots are reconciled once it answers again
                log.warning("launcher %s: cannot list its pilots: %s", key, e)
        return seen

    def stop(self, pilot_id: str) -> None:
        """Stop through the launcher that started the pilot; one this process did not start
        (it restarted since) is asked of every launcher made (each leaves alone what is not
        its own)."""
        key = self._owner.get(pilot_id)
        if key is not None:
            self._made[key].stop(pilot_id)
            return
        for launcher in list(self._made.values()):
            launcher.stop(pilot_id)

    def forget(self, pilot_id: str) -> None:
        """Forget an ended pilot: in the launcher that started it, or, when this process did
        not (it restarted since), in every launcher made."""
        key = self._owner.pop(pilot_id, None)
        owners = [self._made[key]] if key in self._made else list(self._made.values())
        for launcher in owners:
            forget = getattr(launcher, "forget", None)
            if forget is not None:
                forget(pilot_id)
