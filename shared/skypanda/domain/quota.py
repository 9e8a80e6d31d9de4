"""How much one owner may have under way at once: unended tasks, and the jobs of those tasks.

A shared deployment must not let one user's submissions grow the store without bound (a
pipeline looping on submit, a script gone wrong). Each submission (a task, a workflow with
every task it declares, by any door: HTTP, Pub/Sub, the PanDA client, a watched folder) is
checked before anything is stored against what its owner has unended: tasks not in a final
state, and the jobs those tasks have (their `n_jobs`, ended jobs included until the task
ends). The check reads, then the submission writes: two submissions at the same moment may
both pass, so a limit may be overrun by one submission per concurrent request, never more.

Limits are the deployment's (`SKYPANDA_MAX_ACTIVE_TASKS`, `SKYPANDA_MAX_ACTIVE_JOBS`), the
same for every owner; 0 switches one off. The defaults are far above what one person's work
needs (a Rubin campaign of fifty 100k-job DAGs fits), and low enough that no one owner can
fill the store by mistake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from skypanda.domain.errors import InvalidInput, QuotaExceeded

MAX_ACTIVE_TASKS = 5_000
MAX_ACTIVE_JOBS = 5_000_000
TASKS_ENV = "SKYPANDA_MAX_ACTIVE_TASKS"
JOBS_ENV = "SKYPANDA_MAX_ACTIVE_JOBS"


@dataclass(frozen=True)
class Usage:
    """What an owner has unended: tasks, and the jobs of those tasks."""

    tasks: int = 0
    jobs: int = 0


@dataclass(frozen=True)
class Quota:
    """The most an owner may have unended at once (None: no limit)."""

    max_tasks: int | None = MAX_ACTIVE_TASKS
    max_jobs: int | None = MAX_ACTIVE_JOBS

    @property
    def limited(self) -> bool:
        return self.max_tasks is not None or self.max_jobs is not None

    def check(self, owner: str, usage: Usage, tasks: int, jobs: int) -> None:
        """Whether `owner`, having `usage`, may add `tasks` tasks of `jobs` jobs in all.

        Raises:
            QuotaExceeded: a limit would be passed (the message names it, what the owner has,
                and what the submission or retry adds).
        """
        for what, limit, has, adds in (
            ("tasks", self.max_tasks, usage.tasks, tasks),
            ("jobs", self.max_jobs, usage.jobs, jobs),
        ):
            if limit is not None and has + adds > limit:
                raise QuotaExceeded(
                    f"{owner} may have at most {limit:,} unended {what}: {has:,} are under "
                    f"way and this would add {adds:,}. Submit again once some have "
                    f"ended (or kill what is no longer needed).",
                    owner=owner, limit=limit, unended=has, adding=adds, of=what,
                )  # fmt: skip

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Quota:
        """The deployment's limits from `SKYPANDA_MAX_ACTIVE_TASKS` / `_JOBS` (unset: the
        defaults; 0: no limit).

        Raises:
            InvalidInput: a value that is not a whole number from 0 (the variable named).
        """
        return cls(
            max_tasks=_limit(env, TASKS_ENV, MAX_ACTIVE_TASKS),
            max_jobs=_limit(env, JOBS_ENV, MAX_ACTIVE_JOBS),
        )


def _limit(env: Mapping[str, str], name: str, default: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0 or value > 10**12:
        raise InvalidInput(f"{name} must be a whole number from 0 (0: no limit), not {raw!r}")
    return value or None
