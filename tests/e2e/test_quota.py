"""Per-owner limits on a running local system (`domain.quota`): the server reads them from its
environment at start, and the real `skypanda submit` shows the refusal naming the limit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from skypanda.domain.quota import MAX_ACTIVE_JOBS, TASKS_ENV, Quota
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import Gate, cli, wait_until


def test_a_submission_past_the_server_s_limit_is_refused_by_the_real_command(
    make_system: Callable[..., LocalSystem], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server started with SKYPANDA_MAX_ACTIVE_TASKS=1, and a task of it under way
    monkeypatch.setenv(TASKS_ENV, "1")
    system = make_system()
    assert system.svc.quota == Quota(max_tasks=1, max_jobs=MAX_ACTIVE_JOBS)
    gate = Gate(tmp_path / "gate")
    task_file = gate.task_file(tmp_path / "task.yaml", n_jobs=1)
    first = cli(system, "submit", str(task_file))
    assert first.returncode == 0, first.stderr
    me = cli(system, "whoami")
    assert me.returncode == 0, me.stderr
    assert "under way: 1 tasks of at most 1, 1 jobs of at most 5,000,000" in me.stdout
    # When a second task is submitted: refused, naming the limit; nothing stored
    second = cli(system, "submit", str(task_file))
    assert second.returncode != 0
    assert "may have at most 1 unended tasks: 1 are under way" in second.stderr
    assert len(system.svc.tasks.list_tasks()) == 1
    # And once the first ends, the second is taken
    gate.release()
    task_id = first.stdout.strip()
    wait_until(
        lambda: json.loads(cli(system, "status", task_id, "--json").stdout)["status"] == "done",
        120, "the first task to end",
    )  # fmt: skip
    again = cli(system, "submit", str(task_file))
    assert again.returncode == 0, again.stderr
