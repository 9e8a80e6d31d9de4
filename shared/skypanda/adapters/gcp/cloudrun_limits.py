"""Cloud Run's CPU and memory rules for a job's task, as data, and the limits that hold a size.

Source: https://cloud.google.com/run/docs/configuring/jobs/cpu ("vCPU and memory table") and
https://cloud.google.com/run/docs/configuring/jobs/memory-limits (at least 512 MiB in the second
generation execution environment, which jobs run in; at most 32 GiB):

    CPUs   memory             same rule from the memory side
    1      512 MiB to  4 GiB  more than 4 GiB needs 2 CPUs
    2      512 MiB to  8 GiB  more than 8 GiB needs 4 CPUs
    4        2 GiB to 16 GiB  more than 16 GiB needs 6 CPUs
    6        4 GiB to 24 GiB  more than 24 GiB needs 8 CPUs
    8        4 GiB to 32 GiB

No other CPU count is allowed above 1 (not 3, 5 or 7). Below 1 CPU Cloud Run wants request-based
billing, concurrency 1 and sidecars: nothing a pilot runs with, so fractions are never used. A
skypanda "MB" is taken as a MiB, as everywhere else in the launchers.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Resources

GIB = 1024
CPU_MEMORY_MIB: Mapping[int, tuple[int, int]] = MappingProxyType(
    {
        1: (512, 4 * GIB),
        2: (512, 8 * GIB),
        4: (2 * GIB, 16 * GIB),
        6: (4 * GIB, 24 * GIB),
        8: (4 * GIB, 32 * GIB),
    }
)
"""CPUs -> (least, most) memory in MiB a task with that many CPUs may have."""
MAX_CPUS = max(CPU_MEMORY_MIB)
MAX_MEMORY_MIB = max(most for _least, most in CPU_MEMORY_MIB.values())


def container_limits(size: Resources, queue: str) -> dict[str, str]:
    """The smallest Cloud Run limits holding `size`, for queue `queue`: the fewest allowed CPUs
    that are at least `size.cores` and may have `size.memory_mb`; memory raised to the least
    those CPUs need (4 cores and 1000 MB become 4 CPUs and 2 GiB; 1 core and 10 GB, 4 CPUs).

    Raises:
        InvalidInput: no Cloud Run task holds `size` (more than 8 CPUs or 32 GiB); the message
            names the queue and the limit.
    """
    if size.cores > MAX_CPUS:
        raise InvalidInput(
            f"queue {queue}: {size.cores} cores exceeds a Cloud Run task (at most {MAX_CPUS} CPUs)",
            queue=queue,
            cores=size.cores,
            limit_cpus=MAX_CPUS,
        )
    if size.memory_mb > MAX_MEMORY_MIB:
        raise InvalidInput(
            f"queue {queue}: {size.memory_mb} MB exceeds a Cloud Run task "
            f"(at most {MAX_MEMORY_MIB} MiB, {MAX_MEMORY_MIB // GIB} GiB)",
            queue=queue,
            memory_mb=size.memory_mb,
            limit_memory_mib=MAX_MEMORY_MIB,
        )
    # The table grows on both sides, so the first fit is the smallest; 8 CPUs hold any memory
    # up to the maximum, so there always is one.
    cpus = next(
        c for c, (_least, most) in sorted(CPU_MEMORY_MIB.items())
        if c >= size.cores and most >= size.memory_mb
    )  # fmt: skip
    least, _most = CPU_MEMORY_MIB[cpus]
    return {"cpu": str(cpus), "memory": f"{max(size.memory_mb, least)}Mi"}
