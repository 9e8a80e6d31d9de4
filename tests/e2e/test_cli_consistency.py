"""The command line is consistent: --json on every action, priority and paused shown by
`status` and `jobs`, the pilot's help in the look of the rest. Through the installed command."""

from __future__ import annotations

import json
from pathlib import Path

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.test_cli_retry import sky
from tests.e2e.test_cli_up import run_cli


def test_actions_print_json_and_status_and_jobs_show_priority_and_pause(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    # Given queues no pilot serves, and a task of three jobs waiting on it
    api.call(
        "POST",
        "/v1/queues",
        {"queues": [{"name": n, "min_pilots": 0, "max_pilots": 0} for n in ("held", "held2")]},
    )
    task_file = tmp_path / "task.yaml"
    task_file.write_text('name: waits\nqueue: held\nn_jobs: 3\ncommand: ["true"]\n')
    submitted = sky(system, "submit", str(task_file))
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    # When its priority is changed, with --json
    changed = sky(system, "priority", task_id, "7", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout) == {"task_id": task_id, "priority": 7, "jobs_changed": 3}
    # Then `status` shows the priority its jobs have now, and the one it was submitted with
    shown = sky(system, "status", task_id).stdout
    assert "priority 7 (changed; submitted with 0)" in shown
    # When it is paused (--json: the task)
    paused = sky(system, "pause", task_id, "--json")
    assert json.loads(paused.stdout)["status"] == "paused"
    # Then `status` says paused, and `jobs` marks each held job paused, with its priority
    assert "status   paused" in sky(system, "status", task_id).stdout
    rows = sky(system, "jobs", task_id).stdout.splitlines()
    assert "PRIO" in rows[0].split()
    assert len(rows) == 4
    assert all("defined, paused" in row and " 7 " in row for row in rows[1:]), rows
    # When it is resumed, finished and another task killed, each with --json
    resumed = json.loads(sky(system, "resume", task_id, "--json").stdout)
    assert resumed["id"] == task_id and resumed["status"] == "running"
    finished = sky(system, "finish", task_id, "--json")
    assert json.loads(finished.stdout)["id"] == task_id, finished.stderr
    other = sky(system, "submit", str(task_file)).stdout.strip()
    moved = json.loads(sky(system, "reassign", other, "held2", "--json").stdout)
    assert moved["jobs_moved"] == 3
    killed = json.loads(sky(system, "kill", other, "--json").stdout)
    assert (killed["id"], killed["status"]) == (other, "aborted")
    # And without --json each says it in one line
    again = sky(system, "submit", str(task_file)).stdout.strip()
    assert sky(system, "kill", again).stdout == f"task {again}: aborted\n"


def test_the_pilots_help_looks_like_the_other_commands_and_says_why_it_is_argparse(
    tmp_path: Path,
) -> None:
    pilot = run_cli(tmp_path, "pilot", "--help")
    assert pilot.returncode == 0, pilot.stderr
    text = " ".join(pilot.stdout.split())
    assert pilot.stdout.startswith("Usage: skypanda pilot [OPTIONS]")
    assert "\nOptions:\n" in pilot.stdout
    assert "[env var: SKYPANDA_OUTAGE_BUDGET; default: 600]" in text
    assert "--help Show this message and exit." in text
    assert "argparse, not click" in text and "only the Python standard library" in text
    # And a missing option is reported as click reports it
    bad = run_cli(tmp_path, "pilot", "--queue", "q")
    assert bad.returncode == 2
    assert "Try 'skypanda pilot --help' for help." in bad.stderr
    assert "Error: --server and --queue are required" in bad.stderr
