"""Queues end to end through the CLI: apply a queue file, list it, broker a task to the queue
that fits, and refuse a task that fits nowhere with the reason for each queue."""

from __future__ import annotations

import json
from pathlib import Path

from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import cli, write_task

FAST = "heartbeat_interval_s: 0.5, heartbeat_timeout_s: 4, idle_timeout_s: 3, min_pilots: 0"
QUEUES = f"""\
- {{name: big, max_pilots: 1, pilot_resources: {{memory_mb: 8000, cores: 2}},
    max_memory_per_core_mb: 4000, max_walltime_s: 1h, {FAST}}}
- {{name: down, status: offline, pilot_resources: {{memory_mb: 64000, cores: 8}}, {FAST}}}
- {{name: trial, status: test, pilot_resources: {{memory_mb: 64000, cores: 8}}, {FAST}}}
"""


def test_apply_then_broker_to_the_queue_that_fits(system: LocalSystem, tmp_path: Path) -> None:
    # Given a queue file with a big queue, an offline one and a test one
    path = write_task(tmp_path / "queues.yaml", QUEUES)

    # When it is applied with --dry-run, nothing is stored
    dry = cli(system, "queues", "apply", str(path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "big: would add" in dry.stdout
    assert {q.name for q in system.store.list_queues()} == {"local"}

    # When it is applied, the queues are listed with status and limits
    applied = cli(system, "queues", "apply", str(path))
    assert applied.returncode == 0, applied.stderr
    assert "trial: add" in applied.stdout
    again = cli(system, "queues", "apply", str(path))
    assert "big: leave unchanged" in again.stdout
    listed = cli(system, "queues")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert lines["down"].split()[1] == "offline" and lines["trial"].split()[1] == "test"
    assert "4000MB/core" in lines["big"]

    # When a task needing 6000 MB on 2 cores asks for brokerage and is run to the end
    task = write_task(
        tmp_path / "t.yaml",
        "name: heavy\ncommand: [echo, hi]\nn_jobs: 2\nqueue: auto\n"
        "resources: {memory_mb: 6000, cores: 2, walltime: 10m}\n",
    )
    done = cli(system, "submit", str(task), "--wait", "--json")

    # Then it went to `big` (local is too small, down is offline, trial is a test queue) and ran
    assert done.returncode == 0, (done.stdout, done.stderr)
    outcome = json.loads(done.stdout)
    stored = system.store.get_task(outcome["id"])
    assert stored.spec.queue == "big"
    assert {j.queue for j in system.store.list_jobs(stored.id)} == {"big"}


def test_a_task_that_fits_nowhere_waits_pending_with_each_reason(
    system: LocalSystem, tmp_path: Path
) -> None:
    # Given the queues applied
    path = write_task(tmp_path / "queues.yaml", QUEUES)
    assert cli(system, "queues", "apply", str(path)).returncode == 0

    # When a task needing 32000 MB asks for brokerage among all queues
    task = write_task(
        tmp_path / "t.yaml",
        "name: huge\ncommand: [echo]\nn_jobs: 1\nqueues: {exclude: [local]}\n"
        "resources: {memory_mb: 32000}\n",
    )
    out = cli(system, "submit", str(task))

    # Then it waits, pending, and `skypanda status` names each queue and why
    assert out.returncode == 0, (out.stdout, out.stderr)
    shown = cli(system, "status", out.stdout.strip())
    assert "pending" in shown.stdout and "task huge: no queue fits" in shown.stdout
    for why in ("big: 32000 MB > 8000 MB per pilot", "down: offline", "trial: test queue",
                "local: excluded"):  # fmt: skip
        assert why in shown.stdout
    (task,) = system.store.list_tasks()
    assert system.store.list_jobs(task.id) == []


def test_a_bad_queue_file_names_queue_field_and_line_and_stores_nothing(
    system: LocalSystem, tmp_path: Path
) -> None:
    path = write_task(tmp_path / "q.yaml", "- name: ok\n- name: bad\n  status: maybe\n")
    out = cli(system, "queues", "apply", str(path))
    assert out.returncode == 2
    assert "line 3: queue 'bad': status:" in out.stderr
    assert {q.name for q in system.store.list_queues()} == {"local"}
