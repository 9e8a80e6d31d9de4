"""A failed `skypanda run` or `submit --wait` says why; a finished run's home is read
without a server (`status|jobs|logs --home DIR`). Through the installed command."""

from __future__ import annotations

import json
from pathlib import Path

from skypanda.runtime.local import LocalSystem
from tests.e2e.test_cli_retry import sky
from tests.e2e.test_cli_up import run_cli

FAILING = """name: failing
n_jobs: 3
max_attempts: 1
command: [sh, -c, 'echo first line; echo "oops in job {index}" >&2; [ {index} -eq 0 ] || exit 3']
"""


def test_a_failed_run_shows_its_failed_jobs_and_its_home_reads_without_a_server(
    tmp_path: Path,
) -> None:
    # Given a task two of whose three jobs fail
    task_file = tmp_path / "failing.yaml"
    task_file.write_text(FAILING)
    run_home = tmp_path / "run"
    # When it is run
    ran = run_cli(tmp_path / "home", "run", str(task_file), "--home", str(run_home))
    # Then it exits 1 and names the failed jobs: error code and name, diagnosis, log lines
    assert ran.returncode == 1, ran.stderr
    out = ran.stdout
    task_id = out.split()[1]
    assert "failed jobs (2 of 2 shown):" in out
    assert "exit 3, error 9000 PAYLOAD_FAILED" in out
    assert "diagnosis: exit code 3" in out
    assert "| first line" in out and "| oops in job 1" in out and "| oops in job 2" in out
    # And the commands that show more, on the run's home, and that the server has stopped
    assert f"more: skypanda jobs {task_id} --status failed --home {run_home}" in out
    assert f"server stopped; state and logs kept in {run_home}" in ran.stderr
    # When its jobs, a log and its status are read afterwards, with no server running
    jobs = run_cli(tmp_path / "home", "jobs", task_id, "--home", str(run_home), "--json")
    assert jobs.returncode == 0, jobs.stderr
    assert "without a server: read-only" in jobs.stderr
    failed = [j for j in json.loads(jobs.stdout) if j["status"] == "failed"]
    assert sorted(j["index"] for j in failed) == [1, 2]
    log = run_cli(tmp_path / "home", "logs", failed[0]["id"], "--home", str(run_home))
    assert log.returncode == 0, log.stderr
    assert f"oops in job {failed[0]['index']}" in log.stdout
    shown = run_cli(tmp_path / "home", "status", task_id, "--home", str(run_home))
    assert shown.returncode == 0
    assert "status   failed" in shown.stdout
    # Then an unknown id, or a directory that is no home, is one plain sentence
    unknown = run_cli(tmp_path / "home", "status", "tnope", "--home", str(run_home))
    assert unknown.returncode == 1 and "no task with id 'tnope'" in unknown.stderr
    nohome = run_cli(tmp_path / "home", "status", task_id, "--home", str(tmp_path))
    assert nohome.returncode == 1 and "no skypanda state in" in nohome.stderr
    for result in (jobs, log, shown, unknown, nohome):
        assert "Traceback" not in result.stderr


def test_submit_wait_of_a_failing_task_ends_with_its_failures_as_json(
    system: LocalSystem, tmp_path: Path
) -> None:
    # Given a running server and a task that fails
    task_file = tmp_path / "failing.yaml"
    task_file.write_text(FAILING)
    # When it is submitted and waited for, as JSON
    done = sky(system, "submit", str(task_file), "--wait", "--json")
    # Then the one object carries its failed jobs, each with its error and log tail
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed"
    assert [f["index"] for f in result["failures"]] == [1, 2]
    first = result["failures"][0]
    assert first["error_code"] == 9000 and first["exit_code"] == 3
    assert first["log_tail"][-1] == "oops in job 1"
