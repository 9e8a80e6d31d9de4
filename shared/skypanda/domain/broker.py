"""Brokerage: which queue a task's jobs go to. A pure function over values (no store, no clock).

A queue is eligible when its status allows it (online; a test queue only when the task
includes it by name), the task's include/exclude lists allow it, and one job fits it:
memory within the pilot's memory and within `max_memory_per_core_mb` x the job's cores, cores
within the queue's core limit, walltime within `max_walltime_s`, GPUs within the queue's.

Among eligible queues the one with the highest PanDA weight (running + 1) / (queued + 10) wins:
queues that already run much and hold little backlog drain fastest. Ties go to the first name
in sort order, so a decision is reproducible (the domain has no randomness; a burst of
submissions lands on one queue until its queued count rises, which the weight then corrects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from skypanda.domain.models import Queue, QueueStatus, TaskSpec


@dataclass(frozen=True)
class Needs:
    """What one job of a task needs, and where the task allows it to go."""

    memory_mb: int = 2000
    cores: int = 1
    walltime_s: float = 3600.0
    gpus: int = 0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, spec: TaskSpec) -> Needs:
        choice = spec.queues
        r = spec.resources
        return cls(
            memory_mb=r.memory_mb,
            cores=r.cores,
            walltime_s=r.walltime_s,
            gpus=choice.gpus if choice else 0,
            include=tuple(choice.include) if choice else (),
            exclude=tuple(choice.exclude) if choice else (),
        )


@dataclass(frozen=True)
class Load:
    """A queue's load: jobs (or pilots, as a proxy) running, and jobs queued (activated)."""

    running: int = 0
    queued: int = 0


def weight(load: Load) -> float:
    """PanDA's brokerage weight: higher is better."""
    return (load.running + 1) / (load.queued + 10)


@dataclass(frozen=True)
class Decision:
    """The chosen queue, or None (the task cannot go anywhere) with why each queue was not."""

    queue: str | None
    rejected: dict[str, str] = field(default_factory=dict)
    ranking: tuple[tuple[str, float], ...] = ()  # eligible queues, best first

    @property
    def reason(self) -> str:
        """E.g. `q1: offline; q2: 8000 MB > 4000 MB max (4000 MB/core x 1 core)`."""
        return "; ".join(f"{name}: {why}" for name, why in self.rejected.items())


def misfits(needs: Needs, queue: Queue) -> list[str]:
    """Why one job with these needs does not fit the queue (empty: it fits)."""
    out = []
    pilot = queue.pilot_resources
    if needs.memory_mb > pilot.memory_mb:
        out.append(f"{needs.memory_mb} MB > {pilot.memory_mb} MB per pilot")
    per_core = queue.max_memory_per_core_mb
    if per_core is not None and needs.memory_mb > per_core * needs.cores:
        out.append(
            f"{needs.memory_mb} MB > {per_core * needs.cores} MB max "
            f"({per_core} MB/core x {needs.cores} core{'s' if needs.cores > 1 else ''})"
        )
    if needs.cores > queue.cores_limit:
        out.append(f"{needs.cores} cores > {queue.cores_limit} max")
    if queue.max_walltime_s is not None and needs.walltime_s > queue.max_walltime_s:
        out.append(f"walltime {needs.walltime_s:g} s > {queue.max_walltime_s:g} s max")
    if needs.gpus > queue.gpus:
        out.append(f"{needs.gpus} GPUs > {queue.gpus}")
    return out


def rejection(needs: Needs, queue: Queue) -> str | None:
    """Why the queue is not eligible for the task, or None when it is."""
    if queue.name in needs.exclude:
        return "excluded"
    if needs.include and queue.name not in needs.include:
        return "not included"
    if queue.status is QueueStatus.OFFLINE:
        return "offline"
    if queue.status is QueueStatus.TEST and queue.name not in needs.include:
        return "test queue (include it by name to use it)"
    return ", ".join(misfits(needs, queue)) or None


def broker(needs: Needs, queues: Sequence[Queue], loads: Mapping[str, Load]) -> Decision:
    """Choose the queue for a task.

    Args:
        needs: one job's needs and the task's include/exclude lists.
        queues: every queue known.
        loads: each queue's load; a queue missing here counts as idle.

    Returns:
        The eligible queue of highest weight (ties: first by name), or a Decision with no
        queue and the reason each queue (and each included name that is no queue) was rejected.
    """
    rejected: dict[str, str] = {}
    eligible: list[tuple[str, float]] = []
    for q in sorted(queues, key=lambda q: q.name):
        why = rejection(needs, q)
        if why is None:
            eligible.append((q.name, weight(loads.get(q.name, Load()))))
        elif why != "not included":
            rejected[q.name] = why
    known = {q.name for q in queues}
    for name in needs.include:
        if name not in known:
            rejected[name] = "no such queue"
    if not eligible and not rejected:
        rejected["(all)"] = "no queue is defined" if not queues else "no queue is included"
    ranking = tuple(sorted(eligible, key=lambda e: (-e[1], e[0])))
    return Decision(queue=ranking[0][0] if ranking else None, rejected=rejected, ranking=ranking)
