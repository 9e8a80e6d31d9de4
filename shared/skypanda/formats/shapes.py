"""Generated workflows of a given shape and size, for benchmarks and tests.

    rubin   isr per (visit, detector) -> calibrate per visit (waits for its visit's isr jobs)
            -> coadd per patch (waits for the visits that overlap it) -> summary (after coadd)
    chain   long chains: levels of equal width, job i of each level after job i of the last
    fanin   a reduction tree: each job waits for `fan` jobs of the level below
    random  an explicit job graph (JSON lines): each job has up to 3 random earlier parents

Each returns the workflow spec (and, for `random`, the graph lines) with about `jobs` jobs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from skypanda.domain.workflow import WorkflowSpec

SHAPES = ("rubin", "chain", "fanin", "random")
COMMAND = ["true"]


def _task(name: str, queue: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "command": COMMAND, "queue": queue, "max_attempts": 1, **fields}


def rubin(jobs: int, queue: str = "local", detectors: int = 20) -> WorkflowSpec:
    """isr (visits x detectors), calibrate (visits), coadd (patches = visits/4), summary (1)."""
    visits = max(4, int(jobs / (detectors + 1.25)))
    patches = max(1, visits // 4)
    isr = [f"v{v:06d}d{d:03d}" for v in range(visits) for d in range(detectors)]
    calib = [
        f"v{v:06d}:" + "+".join(f"p{(v + k) % patches:05d}" for k in range(4))
        for v in range(visits)
    ]
    coadd = [f"p{p:05d}" for p in range(patches)]
    visit, patch = r"v(\d+)", r"p(\d+)"
    return WorkflowSpec.model_validate(
        {
            "name": "rubin-drp",
            "tasks": [
                _task("isr", queue, inputs=isr, keys={"visit": visit}),
                _task(
                    "calibrate",
                    queue,
                    inputs=calib,
                    keys={"visit": visit, "patch": patch},
                    depends=[{"task": "isr", "by": "visit"}],
                ),
                _task(
                    "coadd",
                    queue,
                    inputs=coadd,
                    keys={"patch": patch},
                    depends=[{"task": "calibrate", "by": "patch"}],
                ),
                _task("summary", queue, n_jobs=1, after=["coadd"]),
            ],
        }
    )


def chain(jobs: int, queue: str = "local", levels: int = 100) -> WorkflowSpec:
    levels = max(1, min(levels, jobs))
    width = max(1, jobs // levels)
    tasks = [_task("level0", queue, n_jobs=width)]
    for k in range(1, levels):
        tasks.append(_task(f"level{k}", queue, n_jobs=width, depends=[{"task": f"level{k - 1}"}]))
    return WorkflowSpec.model_validate({"name": "chain", "tasks": tasks})


def fanin(jobs: int, queue: str = "local", fan: int = 10) -> WorkflowSpec:
    sizes = [1]
    while sum(sizes) < jobs:
        sizes.append(sizes[-1] * fan)
    sizes.reverse()  # widest level first
    tasks: list[dict[str, Any]] = []
    for k, n in enumerate(sizes):
        # Job j of level k carries its own number (c) and its group in the level above (g).
        inputs = [f"c{j}g{j // fan}" for j in range(n)]
        keys: dict[str, str] = {}
        depends: list[dict[str, str]] = []
        if k > 0:
            keys[f"l{k - 1}"] = r"c(\d+)"
            depends.append({"task": f"level{k - 1}", "by": f"l{k - 1}"})
        if k + 1 < len(sizes):
            keys[f"l{k}"] = r"g(\d+)"
        tasks.append(_task(f"level{k}", queue, inputs=inputs, keys=keys, depends=depends))
    return WorkflowSpec.model_validate({"name": "fanin", "tasks": tasks})


def random_graph(
    jobs: int, queue: str = "local", tasks: int = 5, seed: int = 1
) -> tuple[WorkflowSpec, Iterator[bytes]]:
    spec = WorkflowSpec.model_validate(
        {
            "name": "random",
            "graph": "generated",
            "tasks": [_task(f"t{k}", queue, graph=True) for k in range(tasks)],
        }
    )

    def lines() -> Iterator[bytes]:
        rng = random.Random(seed)
        for j in range(jobs):
            parents = (
                sorted({f"j{rng.randrange(max(0, j - 1000), j)}" for _ in range(3)}) if j else []
            )
            parents = parents[: rng.randrange(0, 4)]
            node = {
                "id": f"j{j}",
                "task": f"t{j % tasks}",
                "inputs": [f"in{j}"],
                "parents": parents,
            }
            yield (json.dumps(node) + "\n").encode()

    return spec, lines()


def make(
    shape: str, jobs: int, queue: str = "local"
) -> tuple[WorkflowSpec, Iterator[bytes] | None]:
    """The workflow of `shape` with about `jobs` jobs (and its graph lines, if any)."""
    if shape == "random":
        return random_graph(jobs, queue)
    maker = {"rubin": rubin, "chain": chain, "fanin": fanin}[shape]
    return maker(jobs, queue), None
