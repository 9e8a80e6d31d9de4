"""Bad task files, bad bodies and missing tokens get a clear error and change nothing."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import cli, write_task

BAD_FILES = [
    (
        "name: x\ncommand: [echo]\nn_jobs: 2\nresources:\n  memory_mb: -5\n",
        "line 5: resources.memory_mb",
    ),
    ("name: x\nn_jobs: 2\n", "command: Field required"),
    ("name: x\ncommand: [echo]\nn_jobs: 2\nwalltime_typo: 3\n", "line 4: walltime_typo"),
    ("name: x\ncommand: [echo, '{nope}']\nn_jobs: 2\n", "unknown placeholder {nope}"),
    ("name: x\ncommand: [echo]\n", "give either inputs"),
    ("name: x\ncommand: [echo]\nn_jobs: 1\nqueue: nowhere\n", "unknown queue 'nowhere'"),
    ("name: x\ncommand: [echo\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_task_file_is_refused_with_exit_2_and_nothing_stored(
    system: LocalSystem, tmp_path: Path, text: str, expected: str
) -> None:
    # Given a task file with one mistake
    path = write_task(tmp_path / "bad.yaml", text)
    # When it is submitted
    out = cli(system, "submit", str(path))
    # Then the CLI exits 2 with a message naming the problem, no traceback, and no task exists
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert system.store.list_tasks() == []


def test_missing_file_is_bad_input(tmp_path: Path) -> None:
    out = cli(None, "run", str(tmp_path / "nope.yaml"), home=tmp_path)
    assert out.returncode == 2 and "cannot read file" in out.stderr


def _raw(
    system: LocalSystem,
    method: str,
    path: str,
    body: bytes | None,
    token: str | None,
    ctype: str = "application/json",
) -> tuple[int, str]:
    req = urllib.request.Request(system.url + path, data=body, method=method)
    req.add_header("Content-Type", ctype)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/health"), ("GET", "/v1/tasks"), ("POST", "/v1/tasks"), ("GET", "/v1/tasks/x"),
     ("POST", "/v1/pilots"), ("POST", "/v1/pilots/p/acquire"), ("GET", "/v1/queues"),
     ("GET", "/nope")],
)  # fmt: skip
def test_every_endpoint_requires_the_token(system: LocalSystem, method: str, path: str) -> None:
    status, body = _raw(system, method, path, b"{}" if method == "POST" else None, token=None)
    assert status == 401 and "bearer token" in body
    status, body = _raw(system, method, path, b"{}" if method == "POST" else None, token="wrong")
    assert status == 401 and "invalid bearer token" in body


@pytest.mark.parametrize(
    ("body", "ctype", "status", "expected"),
    [
        (b"not json", "application/json", 422, "the request body is not JSON"),
        (b"[1, 2]", "application/json", 422, "must be a JSON object"),
        # hostile bodies (issue 13): each a clear 4xx, never a 500 or a stall
        (
            b'{"name": "x", "command": ["echo"], "n_jobs": 1, "priority": Infinity}',
            "application/json",
            422,
            "Infinity: numbers must be finite",
        ),
        (
            b'{"name": "x", "command": ["echo"], "n_jobs": 1, "priority": 1e999}',
            "application/json",
            422,
            "1e999, which overflows a number",
        ),
        (
            b'{"name": "x\\ud800", "command": ["echo"], "n_jobs": 1}',
            "application/json",
            422,
            "a lone surrogate",
        ),
        (
            b'{"name": "x", "command": ["echo\\u0000"], "n_jobs": 1}',
            "application/json",
            422,
            "a NUL character",
        ),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "application/json", 422, "nested"),
        (b"a: " + b"[" * 100_000 + b"]" * 100_000, "application/yaml", 422, "nest"),
        (b"a: &x [*x]\n", "application/yaml", 422, "a recursive alias"),
        (
            b"name: x\ncommand: [echo]\nn_jobs: 1\n" + b"#" * (5 * 1024 * 1024),
            "application/yaml",
            413,
            "send larger ones as JSON",
        ),
        (b'{"name": "x", "command": ["echo"]}', "application/json", 422, "give either inputs"),
        (b'{"name": "x", "command": "echo", "n_jobs": 1}', "application/json", 422, "command"),
        (b'{"name": "x", "command": ["echo"], "n_jobs": 0}', "application/json", 422, "n_jobs"),
        (b"name: x\ncommand: [echo]\nn_jobs: -1\n", "application/yaml", 422, "line 3: n_jobs"),
    ],
)
def test_bad_bodies_get_422_naming_the_field(
    system: LocalSystem, body: bytes, ctype: str, status: int, expected: str
) -> None:
    code, text = _raw(system, "POST", "/v1/tasks", body, system.token, ctype)
    assert code == status and expected in text, text
    assert system.store.list_tasks() == []


def test_unknown_ids_are_404(system: LocalSystem, api: ApiClient) -> None:
    for path in ("/v1/tasks/t000", "/v1/tasks/t000/jobs", "/v1/jobs/j0", "/v1/jobs/j0/log"):
        with pytest.raises(ApiError) as err:
            api.call("GET", path)
        assert err.value.status == 404 and "no " in err.value.message
    with pytest.raises(ApiError) as err:
        api.call("POST", "/v1/tasks/t000/kill")
    assert err.value.status == 404


def test_bad_pilot_reports_are_refused_without_changing_jobs(
    system: LocalSystem, api: ApiClient
) -> None:
    # Given a registered pilot that holds no job
    reg = api.call(
        "POST", "/v1/pilots", {"queue": "local", "resources": {"memory_mb": 100, "cores": 1}}
    )
    pid = reg["pilot"]["id"]
    # When it reports on a job it does not hold, or sends an illegal status
    out = api.call(
        "POST",
        f"/v1/pilots/{pid}/update",
        {"reports": [{"job_id": "nope", "attempt": 1, "status": "finished"}]},
    )
    assert out["results"] == [
        {"job_id": "nope", "accepted": False, "reason": "no job with id 'nope'"}
    ]
    with pytest.raises(ApiError) as err:
        api.call(
            "POST",
            f"/v1/pilots/{pid}/update",
            {"reports": [{"job_id": "x", "attempt": 1, "status": "activated"}]},
        )
    assert err.value.status == 422 and "cannot report activated" in err.value.message
