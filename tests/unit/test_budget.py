"""A task's stored size is bounded before anything is stored (domain.budget): the estimate is
an upper bound of what SQLite really stores, and small requests that would expand a hundred
thousand times are refused, naming what costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from skypanda.domain.budget import (
    MAX_COMMAND_BYTES,
    check_task_budget,
    check_workflow_budget,
    stored_bytes,
)
from skypanda.domain.errors import InvalidInput
from skypanda.domain.models import Queue, TaskSpec
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.submit import submit
from skypanda.runtime.router import Router
from tests.support import FakeClock, sqlite_services


def _stored(tmp_path: Path, spec: TaskSpec) -> int:
    """Bytes the embedded store takes for the task once split (database files only)."""
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as svc:
        # Measured with the write-ahead log folded in: how much of the schema's creation is
        # still in the log when measuring starts must not count.
        svc.store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
        before = sum(f.stat().st_size for f in tmp_path.rglob("db.sqlite*"))
        submit(svc, spec, owner="me")
        Router(Pipeline(svc), svc.store).drain()
        svc.store._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
    return sum(f.stat().st_size for f in tmp_path.rglob("db.sqlite*")) - before


@pytest.mark.parametrize(
    "spec",
    [
        TaskSpec(name="long", command=["echo", "a" * 20_000], n_jobs=300),
        TaskSpec(
            name="copies",
            command=["echo", "{input}", "{inputs}", "{index}"],
            inputs=[f"file{i:08d}.fits" for i in range(6000)],
            files_per_job=7,
        ),
        TaskSpec(name="env", command=["true"], n_jobs=1500, env={"A": "b" * 5000}),
    ],
    ids=["long command", "inputs copied", "env"],
)
def test_the_estimate_bounds_what_is_really_stored(tmp_path: Path, spec: TaskSpec) -> None:
    real = _stored(tmp_path, spec)
    estimate = stored_bytes(spec)
    assert real <= estimate <= 3 * real, (real, estimate)


def test_a_small_request_that_would_expand_a_thousandfold_is_refused() -> None:
    # The example: ~70 KB of JSON that stored 167 MB (a {task} placeholder, repeated,
    # with a long name, in each of 200 jobs)
    spec = TaskSpec(name="n" * 100, command=["echo"] + ["{task}"] * 8000, n_jobs=200)
    assert len(spec.model_dump_json()) < 80_000
    with pytest.raises(InvalidInput, match=r"one job's command, inputs and env could take "
                       r"8\d\d,\d\d\d bytes once its placeholders are filled"):  # fmt: skip
        check_task_budget(spec)


def test_fields_copied_into_every_job_are_bounded_each() -> None:
    with pytest.raises(InvalidInput, match=rf"command is .* the limit is {MAX_COMMAND_BYTES:,}"):
        check_task_budget(TaskSpec(name="c", command=["x" * 70_000], n_jobs=1))
    with pytest.raises(InvalidInput, match=r"env is .* copied into every job"):
        check_task_budget(TaskSpec(name="e", command=["true"], n_jobs=1, env={"A": "x" * 70_000}))


def test_a_million_lean_jobs_fit_and_a_million_fat_ones_do_not() -> None:
    assert check_task_budget(TaskSpec(name="lean", command=["true", "{index}"], n_jobs=1_000_000))
    fat = TaskSpec(name="fat", command=["echo", "x" * 2000], n_jobs=1_000_000)
    with pytest.raises(InvalidInput, match=r"would take about 3,\d\d\d MB to store; the limit"):
        check_task_budget(fat)


def test_a_workflow_is_bounded_as_a_whole() -> None:
    check_workflow_budget("w", [1024**3, 1024**3])
    with pytest.raises(InvalidInput, match="workflow w: its jobs would take about 5,120 MB"):
        check_workflow_budget("w", [1024**3] * 5)
