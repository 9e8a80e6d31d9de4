"""End to end: pilots stage inputs in and outputs out, and run in push mode.

Real HTTP, real pilot subprocesses, real payloads; inputs come from local files, a local
http.server and the fake-gcs Cloud Storage emulator; outputs are read back from the blob store.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.gcp.gcs_blobs import client_from_env
from skypanda.domain.jobflow import output_key
from skypanda.domain.models import OutputFile
from skypanda.domain.states import JobStatus
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.emulators import Emulator
from skypanda.runtime.local import LocalSystem
from skypanda.wire.codes import ErrorCode
from tests.e2e.conftest import cli, fast_queue, wait_until

pytestmark = pytest.mark.e2e

ENDED = {"done", "finished", "failed"}
UPPER = ["sh", "-c", "tr a-z A-Z < {input} > upper-{index}.txt"]
"""A payload that reads its staged input by the local name and writes one .txt output."""


def run_task(api: ApiClient, spec: dict[str, Any], timeout: float = 60) -> list[dict[str, Any]]:
    """Submit a task, wait for it to end, return its jobs in index order."""
    task = api.call("POST", "/v1/tasks", {"max_attempts": 1, **spec})
    path = f"/v1/tasks/{task['id']}"
    wait_until(lambda: api.call("GET", path)["status"] in ENDED, timeout, f"{spec['name']} ends")
    jobs: list[dict[str, Any]] = api.call("GET", f"{path}/jobs")["jobs"]
    return jobs


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_output(system: LocalSystem, job: dict[str, Any]) -> tuple[OutputFile, bytes]:
    """The job's one output, and its bytes read back from the blob store."""
    (out,) = [OutputFile.model_validate(o) for o in job["outputs"]]
    data = system.blobs.read(output_key(job["id"], job["attempt"], out.name))
    assert out.uri == system.blobs.uri(output_key(job["id"], job["attempt"], out.name))
    return out, data


def test_file_inputs_are_staged_in_and_outputs_uploaded_with_their_checksums(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given two text inputs and a task that upper-cases each into upper-<index>.txt, uploading
    # every .txt file of its workdir (the staged inputs are .txt too)
    system = make_system()
    api = ApiClient(system.url, system.token)
    inputs = []
    for name, text in (("a.txt", "alpha\n"), ("b.txt", "beta\n")):
        (tmp_path / name).write_text(text)
        inputs.append((tmp_path / name).as_uri())

    # When it runs
    jobs = run_task(
        api,
        {"name": "upper", "command": UPPER, "inputs": inputs, "stage_in": True,
         "outputs": ["*.txt"]},
    )  # fmt: skip

    # Then each job finished with exactly its own output, stored with the right size and hash
    assert [j["status"] for j in jobs] == ["finished", "finished"]
    for job, expected in zip(jobs, (b"ALPHA\n", b"BETA\n"), strict=True):
        out, data = stored_output(system, job)
        assert (out.name, data) == (f"upper-{job['index']}.txt", expected)
        assert (out.size, out.sha256) == (len(expected), sha256(expected))
    # And the job (as the API shows it) lists its outputs; its log names the staged input's hash
    detail = api.call("GET", f"/v1/jobs/{jobs[0]['id']}")
    assert detail["outputs"] == jobs[0]["outputs"]
    log = api.call("GET", f"/v1/jobs/{jobs[0]['id']}/log")
    hashed = sha256(b"alpha\n")
    assert f"stage-in {inputs[0]} -> a.txt: 6 bytes, sha256 {hashed}" in log
    assert "stage-out upper-0.txt" in log
    # And once the job ended, not even its pilot may add outputs to it
    put = f"/v1/jobs/{jobs[0]['id']}/outputs/late.txt"
    params = {"attempt": 1, "pilot": jobs[0]["pilot_id"]}
    with pytest.raises(ApiError) as refused:
        api.call("PUT", put, params=params, raw=b"late")
    assert refused.value.status == 409


def test_an_output_the_server_refuses_fails_the_job_with_stage_out_failed(
    make_system: Callable[..., LocalSystem],
) -> None:
    # Given a payload that succeeds but writes an output whose name holds a tab
    system = make_system()
    api = ApiClient(system.url, system.token)
    write = ["sh", "-c", 'echo ok > good.txt; echo x > "$(printf "bad\\tname.txt")"']

    # When it runs
    (job,) = run_task(api, {"name": "badout", "command": write, "n_jobs": 1, "outputs": ["*"]})

    # Then the job failed with STAGE_OUT_FAILED naming the output, and recorded no outputs
    assert (job["status"], job["exit_code"]) == ("failed", 0)
    assert job["error_code"] == ErrorCode.STAGE_OUT_FAILED
    assert "bad\tname.txt" in job["error_diag"] and "control characters" in job["error_diag"]
    assert job["outputs"] == []


def test_a_missing_input_fails_the_job_with_stage_in_failed_before_the_payload(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a task whose payload would leave a mark, and whose input does not exist
    system = make_system()
    api = ApiClient(system.url, system.token)
    missing = (tmp_path / "nowhere" / "x.txt").as_uri()
    mark = tmp_path / "payload-ran"

    # When it runs
    (job,) = run_task(
        api,
        {"name": "missing", "command": ["touch", str(mark)], "inputs": [missing],
         "stage_in": True},
    )  # fmt: skip

    # Then the job failed with STAGE_IN_FAILED naming the input, and the payload never ran
    assert job["status"] == "failed"
    assert job["error_code"] == ErrorCode.STAGE_IN_FAILED
    assert missing in job["error_diag"]
    assert job["exit_code"] is None
    assert not mark.exists()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static web server on 127.0.0.1: its base URL and the directory it serves."""
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args: Any) -> _Quiet:
        return _Quiet(*args, directory=str(root))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()
    thread.join()


def test_http_inputs_are_downloaded_and_a_404_fails_only_its_job(
    make_system: Callable[..., LocalSystem], web: tuple[str, Path]
) -> None:
    # Given a web server holding one of two inputs
    base, root = web
    (root / "served.txt").write_bytes(b"over http\n")
    system = make_system()
    api = ApiClient(system.url, system.token)

    # When a task staging both runs (one job per input; partial success allowed)
    ok, gone = run_task(
        api,
        {"name": "web", "command": UPPER, "inputs": [f"{base}/served.txt", f"{base}/gone.txt"],
         "stage_in": True, "outputs": ["upper-*"], "allow_partial": True},
    )  # fmt: skip

    # Then the served input was fetched and transformed, and the missing one failed its job
    out, data = stored_output(system, ok)
    assert data == b"OVER HTTP\n" and out.sha256 == sha256(data)
    assert (gone["status"], gone["error_code"]) == ("failed", ErrorCode.STAGE_IN_FAILED)
    assert "HTTP 404" in gone["error_diag"] and f"{base}/gone.txt" in gone["error_diag"]


def test_gs_inputs_are_downloaded_from_cloud_storage(
    storage_emulator: Emulator, make_system: Callable[..., LocalSystem]
) -> None:
    # Given an object in a bucket of the Cloud Storage emulator (STORAGE_EMULATOR_HOST is set
    # for this process, and the pilots the system launches inherit it)
    client = client_from_env(os.environ["GOOGLE_CLOUD_PROJECT"])
    bucket = client.create_bucket(f"in-{uuid.uuid4().hex[:12]}")
    bucket.blob("run 1/hits.txt").upload_from_string(b"from the bucket\n")
    client.close()
    system = make_system()
    api = ApiClient(system.url, system.token)

    # When a task stages it in
    (job,) = run_task(
        api,
        {"name": "gcs", "command": UPPER, "inputs": [f"gs://{bucket.name}/run 1/hits.txt"],
         "stage_in": True, "outputs": ["*.txt"]},
    )  # fmt: skip

    # Then the payload read it under its local name
    assert job["status"] == "finished", job["error_diag"]
    assert job["command"] == ["sh", "-c", "tr a-z A-Z < hits.txt > upper-0.txt"]
    assert stored_output(system, job)[1] == b"FROM THE BUCKET\n"


def test_a_push_pilot_runs_exactly_its_job_and_exits(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a queue where the scaler launches no pilot, and a task of three activated jobs
    system = make_system(fast_queue(min_pilots=0, max_pilots=0))
    api = ApiClient(system.url, system.token)
    task = api.call("POST", "/v1/tasks", {"name": "push", "command": ["true"], "n_jobs": 3})
    jobs_path = f"/v1/tasks/{task['id']}/jobs"
    jobs = wait_until(
        lambda: (
            len(js := api.call("GET", jobs_path)["jobs"]) == 3
            and {j["status"] for j in js} == {"activated"}
            and js
        ),
        what="the 3 jobs made and activated",
    )
    target = jobs[1]["id"]
    push = ("pilot", "--server", system.url, "--queue", "local", "--job", target,
            "--cores", "1", "--memory-mb", "4000", "--workdir", str(tmp_path / "push"))  # fmt: skip

    # When a push pilot is started for job 1
    ran = cli(system, *push)

    # Then it ran that job, exited 0, and left the other jobs activated
    assert ran.returncode == 0, ran.stderr
    statuses = {j["index"]: j["status"] for j in api.call("GET", jobs_path)["jobs"]}
    assert statuses == {0: "activated", 1: "finished", 2: "activated"}
    # And a push pilot for a job that is no longer there exits non-zero, saying so
    again = cli(system, *push)
    assert again.returncode == 4
    assert f"job {target} is not available" in again.stderr


def test_a_pull_pilot_runs_many_jobs(make_system: Callable[..., LocalSystem]) -> None:
    # Given a queue served by one pilot at a time, and a task of many jobs
    system = make_system(fast_queue(min_pilots=0, max_pilots=1))
    api = ApiClient(system.url, system.token)

    # When it runs
    jobs = run_task(api, {"name": "many", "command": ["true"], "n_jobs": 40})

    # Then every job finished, all on the one pilot
    assert {j["status"] for j in jobs} == {str(JobStatus.FINISHED)}
    assert len({j["pilot_id"] for j in jobs}) == 1
