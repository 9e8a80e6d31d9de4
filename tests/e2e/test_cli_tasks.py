"""`skypanda tasks` and `skypanda workflows` (pbook's show): yours by default, filtered,
newest first, paged. Through the installed command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from skypanda.domain.identity import Role
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.test_cli_retry import sky
from tests.e2e.test_cli_up import SKYPANDA


def as_user(system: LocalSystem, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPANDA_")}
    env.update(
        SKYPANDA_SERVER=system.url, SKYPANDA_TOKEN=token, SKYPANDA_HOME=str(system.opts.home)
    )
    return subprocess.run(
        [SKYPANDA, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def names(result: subprocess.CompletedProcess[str], kind: str = "tasks") -> list[str]:
    assert result.returncode == 0, result.stderr
    return [t["spec"]["name"] for t in json.loads(result.stdout)[kind]]


def test_tasks_lists_yours_newest_first_filtered_and_paged(
    system: LocalSystem, api: ApiClient, tmp_path: Path
) -> None:
    # Given tasks of the admin (waiting on a queue no pilot serves) and one of alice
    api.call("POST", "/v1/queues", {"queues": [{"name": "held", "min_pilots": 0, "max_pilots": 0}]})
    alice = system.users.add("alice", Role.USER)
    for name in ("mine-a", "mine-b", "other-c"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(f'name: {name}\nqueue: held\nn_jobs: 2\ncommand: ["true"]\n')
        submitted = sky(system, "submit", str(path))
        assert submitted.returncode == 0, submitted.stderr
    path = tmp_path / "alice.yaml"
    path.write_text('name: alices\nqueue: held\nn_jobs: 1\ncommand: ["true"]\n')
    assert as_user(system, alice, "submit", str(path)).returncode == 0
    # When the admin lists tasks, Then only theirs show, newest first
    assert names(sky(system, "tasks", "--json")) == ["other-c", "mine-b", "mine-a"]
    table = sky(system, "tasks").stdout.splitlines()
    assert table[0].split() == ["TASK", "NAME", "STATUS", "PRIO", "JOBS", "CREATED", "OWNER"]
    assert [row.split()[1] for row in table[1:]] == ["other-c", "mine-b", "mine-a"]
    # And alice sees hers (the server knows who asks); --owner and --all show others'
    assert names(as_user(system, alice, "tasks", "--json")) == ["alices"]
    assert names(sky(system, "tasks", "--owner", "alice", "--json")) == ["alices"]
    assert len(names(sky(system, "tasks", "--all", "--json"))) == 4
    # And filters: name prefix, state, age
    assert names(sky(system, "tasks", "--name", "mine", "--json")) == ["mine-b", "mine-a"]
    assert names(sky(system, "tasks", "--status", "done", "--json")) == []
    assert "no task of" in sky(system, "tasks", "--status", "done").stdout
    assert len(names(sky(system, "tasks", "--since", "1h", "--json"))) == 3
    assert names(sky(system, "tasks", "--until", "1h", "--json")) == []
    # And pages: two, then the rest with the cursor the first gave
    first = json.loads(sky(system, "tasks", "--limit", "2", "--json").stdout)
    assert [t["spec"]["name"] for t in first["tasks"]] == ["other-c", "mine-b"]
    assert first["next"]
    rest = sky(system, "tasks", "--limit", "2", "--cursor", first["next"], "--json")
    assert names(rest) == ["mine-a"]
    assert f"--cursor {first['next']}" in sky(system, "tasks", "--limit", "2").stdout
    # And bad filters are one plain sentence
    bad_age = sky(system, "tasks", "--since", "soon")
    assert bad_age.returncode == 2 and "give an age (30m, 2h, 7d) or a date" in bad_age.stderr
    bad_state = sky(system, "tasks", "--status", "bogus")
    assert bad_state.returncode == 2 and "unknown state 'bogus'" in bad_state.stderr


def test_workflows_lists_yours(system: LocalSystem, tmp_path: Path) -> None:
    # Given a workflow of the admin
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: pair\ntasks:\n  - {name: one, n_jobs: 1, command: [echo, one]}\n"
        "  - {name: two, n_jobs: 1, after: [one], command: [echo, two]}\n"
    )
    workflow_id = sky(system, "submit", str(flow)).stdout.strip()
    # When workflows are listed, Then it shows, with its tasks counted
    assert names(sky(system, "workflows", "--json"), "workflows") == ["pair"]
    rows = sky(system, "workflows").stdout.splitlines()
    assert rows[1].split()[:4] == [workflow_id, "pair", rows[1].split()[2], "2"]
    assert names(sky(system, "workflows", "--name", "nope", "--json"), "workflows") == []
