"""Workflows end to end on the embedded backend: the real `skypanda` command, the HTTP API,
real pilots running real payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import REPO, cli, wait_until

EXAMPLES = ["diamond", "scatter-gather", "rubin-drp", "refine-loop", "graph/quanta"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflows_run_to_done(name: str, tmp_path: Path) -> None:
    # When an example workflow is run on a private local system
    out = cli(None, "run", f"workflows/{name}.yaml", "--json", "--home", str(tmp_path / "h"))

    # Then it ends done, every job finished, exit 0
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "done"
    assert set(result["jobs"]) == {"finished"}


def test_refine_loop_runs_three_iterations_and_skips_give_up(tmp_path: Path) -> None:
    out = cli(None, "run", "workflows/refine-loop.yaml", "--json", "--home", str(tmp_path / "h"))
    assert out.returncode == 0, out.stderr
    tasks = json.loads(out.stdout)["tasks"]
    assert tasks == {
        "fit": "done", "check": "done", "publish": "done", "give_up": "skipped",
        "fit#2": "done", "check#2": "done", "fit#3": "done", "check#3": "done",
    }  # fmt: skip


FLAKY = """
name: flaky
tasks:
  - name: make
    command: [sh, -c, 'echo made {index}']
    n_jobs: 3
    max_attempts: 1
  - name: use
    # job 1 fails until the file named by FIX exists (a user fixes the cause, then retries)
    command: [sh, -c, 'if [ {index} = 1 ] && [ ! -e "$FIX" ]; then exit 3; fi; echo used {index}']
    n_jobs: 3
    max_attempts: 1
    depends: [{task: make, by: index}]
    env: {FIX: "%s"}
  - name: publish
    command: [sh, -c, 'echo published']
    n_jobs: 1
    after: [use]
"""


def test_failed_workflow_status_then_retry_keeps_finished_jobs(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    # Given a workflow whose job use[1] fails
    fix = tmp_path / "fixed"
    wf_file = tmp_path / "flaky.yaml"
    wf_file.write_text(FLAKY % fix)
    out = cli(system, "submit", str(wf_file), "--wait", "--json")
    assert out.returncode == 1, out.stderr
    failed = json.loads(out.stdout)
    assert failed["status"] == "failed"
    assert failed["tasks"] == {"make": "done", "use": "failed", "publish": "cancelled"}

    # Then `skypanda status` shows each task's jobs by state, and why publish did not run
    shown = cli(system, "status", failed["id"])
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line}
    assert lines["make"][1:3] == ["done", "3"] and lines["use"][1:3] == ["failed", "3"]
    assert "missing parent: task use failed" in shown.stdout
    view = api.call("GET", f"/v1/workflows/{failed['id']}")
    use = next(t for t in view["tasks"] if t["name"] == "use")
    assert use["job_counts"] == {"finished": 2, "failed": 1}
    before = {j["index"]: j for j in api.call("GET", f"/v1/tasks/{use['id']}/jobs")["jobs"]}

    # When the cause is fixed and the workflow retried
    fix.touch()
    retried = cli(system, "retry", failed["id"])
    assert retried.returncode == 0, retried.stderr
    assert "1 jobs to rerun" in retried.stdout
    done = wait_until(
        lambda: (v := api.call("GET", f"/v1/workflows/{failed['id']}"))["status"] == "done" and v,
        timeout=60,
        what="the retried workflow",
    )

    # Then it is done; finished jobs kept their attempt, the failed one ran a second attempt
    assert {t["name"]: t["status"] for t in done["tasks"]} == {
        "make": "done", "use": "done", "publish": "done",
    }  # fmt: skip
    after = {j["index"]: j for j in api.call("GET", f"/v1/tasks/{use['id']}/jobs")["jobs"]}
    assert [after[i]["attempt"] for i in range(3)] == [1, 2, 1]
    assert after[0]["ended_at"] == before[0]["ended_at"]


def test_dag_export_from_a_file_and_from_a_live_workflow(system: LocalSystem) -> None:
    # From a file: no server needed
    dot = cli(None, "dag", "workflows/rubin-drp.yaml")
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout.startswith('digraph "rubin-drp"')
    assert '"isr" -> "calibrate" [label="by visit"]' in dot.stdout
    assert '"coadd" -> "summary" [label="after"]' in dot.stdout
    mermaid = cli(None, "dag", "workflows/refine-loop.yaml", "--format", "mermaid")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR")
    assert 'subgraph t_refine["loop refine until check flag converged"]' in mermaid.stdout

    # From a live workflow: task states are shown
    out = cli(system, "submit", "workflows/diamond.yaml", "--wait", "--json")
    wf_id = json.loads(out.stdout)["id"]
    live = cli(system, "dag", wf_id, "--format", "mermaid")
    assert live.returncode == 0, live.stderr
    assert 't_merge["merge<br/>done"]' in live.stdout


def test_a_cyclic_workflow_is_refused_naming_the_cycle_and_nothing_is_stored(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    bad = tmp_path / "cycle.yaml"
    bad.write_text(
        "name: c\ntasks:\n"
        "  - {name: a, command: [x], n_jobs: 1, after: [c]}\n"
        "  - {name: b, command: [x], n_jobs: 1, after: [a]}\n"
        "  - {name: c, command: [x], n_jobs: 1, after: [b]}\n"
    )
    out = cli(system, "submit", str(bad))
    assert out.returncode == 2
    assert "dependency cycle:" in out.stderr
    assert any(
        c in out.stderr for c in ("a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c")
    )
    assert api.call("GET", "/v1/workflows")["workflows"] == []
    assert api.call("GET", "/v1/tasks")["tasks"] == []


def test_a_graph_with_a_forward_reference_is_refused_with_its_line(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    (tmp_path / "g.jsonl").write_text(
        '{"id": "x", "task": "t", "parents": ["y"]}\n{"id": "y", "task": "t"}\n'
    )
    wf = tmp_path / "g.yaml"
    wf.write_text("name: g\ngraph: g.jsonl\ntasks:\n  - {name: t, command: [x], graph: true}\n")
    out = cli(system, "submit", str(wf))
    assert out.returncode == 2
    assert "graph line 1: job 'x' names parent 'y', which is not listed before it" in out.stderr
    assert api.call("GET", "/v1/workflows")["workflows"] == []


def test_examples_are_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for name in EXAMPLES:
        assert f"workflows/{name}.yaml" in readme
