"""CloudRunLauncher through the real google-cloud-run client against a recording local server.

There is no Cloud Run emulator: tests/gcp/recording_server.py answers the Cloud Run Admin API v2
REST calls the launcher makes, and these tests assert what a real project would receive.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials

from skypanda.adapters.gcp.cloudrun_launcher import CloudRunLauncher, container_limits
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import CloudRunLauncherSpec
from skypanda.domain.models import Job, Queue, Resources
from skypanda.domain.states import JobStatus
from skypanda.ports import LaunchedPilot
from tests.gcp.recording_server import FakeCloudRun

PARENT = "projects/my-project/locations/europe-west1"
JOB = f"{PARENT}/jobs/skypanda-cr"
SA = "pilot@my-project.iam.gserviceaccount.com"


def launch_credential(pilot_id: str) -> str:
    """Stands for PilotCredentials.issue_launch: one credential per pilot."""
    return f"launch-credential-of-{pilot_id}"


@pytest.fixture
def api() -> Iterator[FakeCloudRun]:
    fake = FakeCloudRun().start()
    yield fake
    fake.close()


@pytest.fixture
def launcher(api: FakeCloudRun) -> CloudRunLauncher:
    return CloudRunLauncher(
        server_url="https://skypanda.example.org",
        credential_for=launch_credential,
        client_options={"api_endpoint": api.endpoint},
        credentials=AnonymousCredentials(),
    )


def cloudrun_queue(**launcher: Any) -> Queue:
    spec = CloudRunLauncherSpec(
        kind="cloudrun",
        project="my-project",
        region="europe-west1",
        job="skypanda-cr",
        image="europe-docker.pkg.dev/my-project/skypanda/pilot:1",
        service_account=SA,
        max_retries=1,
        timeout_s=7200,
        **launcher,
    )
    return Queue(name="cr", mode="push", pilot_resources=Resources(memory_mb=4000), launcher=spec)


def push_job(memory_mb: int = 6000, cores: int = 2) -> Job:
    return Job(
        id="job-7",
        task_id="t1",
        index=0,
        status=JobStatus.ACTIVATED,
        queue="cr",
        command=["true"],
        resources=Resources(memory_mb=memory_mb, cores=cores, walltime=10_000),
        created_at=1.0,
        updated_at=1.0,
    )


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueSource")) for e in container["env"]}


def test_first_launch_creates_the_queue_job_with_the_pilot_template(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given a Cloud Run queue whose job does not exist yet
    # When a pilot is launched
    launcher.launch(cloudrun_queue(), "p1")
    # Then the job was looked up, found missing, and created under the queue's job id
    assert [(r.method, r.path) for r in api.requests[:2]] == [
        ("GET", f"/v2/{JOB}"),
        ("POST", f"/v2/{PARENT}/jobs"),
    ]
    create = api.requests[1]
    assert create.query["jobId"] == ["skypanda-cr"]
    # And its template runs one pilot task with the image, server and queue, and no credential
    assert create.body["labels"] == {"skypanda-queue": "cr"}
    assert create.body["template"]["taskCount"] == 1
    task = create.body["template"]["template"]
    assert task["timeout"] == "7200s"
    assert task["maxRetries"] == 1
    assert task["serviceAccount"] == SA
    [container] = task["containers"]
    assert container["name"] == "pilot"
    assert container["image"] == "europe-docker.pkg.dev/my-project/skypanda/pilot:1"
    assert container["command"] == ["python3", "-m", "skypanda", "pilot"]
    assert container["args"] == ["--memory-mb", "4000", "--cores", "1"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "4000Mi"}
    assert env_of(container) == {
        "SKYPANDA_SERVER": "https://skypanda.example.org",
        "SKYPANDA_QUEUE": "cr",
    }
    assert "skypanda-pilot-token" not in str(create.body)  # no Secret: no deployment token


def test_a_pull_pilot_is_one_execution_with_its_pilot_id(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # When a (pull-mode) pilot is launched
    ref = launcher.launch(cloudrun_queue(), "p1")
    # Then the job was run once, overriding the pilot id and its own launch credential, one
    # task, the queue's timeout
    [run] = api.calls("POST", ":run")
    assert run.path == f"/v2/{JOB}:run"
    overrides = run.body["overrides"]
    assert overrides["taskCount"] == 1
    assert overrides["timeout"] == "7200s"
    assert overrides["containerOverrides"] == [
        {
            "name": "pilot",
            "env": [
                {"name": "SKYPANDA_PILOT_ID", "value": "p1"},
                {"name": "SKYPANDA_TOKEN", "value": "launch-credential-of-p1"},
            ],
        }
    ]
    # And the reference is the execution's name, read from the operation's metadata
    assert ref == f"{JOB}/executions/skypanda-cr-00002"
    assert ref in api.executions


def test_a_second_launch_reuses_the_job(api: FakeCloudRun, launcher: CloudRunLauncher) -> None:
    # Given a pilot already launched (the job was created)
    first = launcher.launch(cloudrun_queue(), "p1")
    # When another pilot is launched on the same queue
    second = launcher.launch(cloudrun_queue(), "p2")
    # Then the job was created once and run twice, as two executions
    assert len(api.calls("POST", "/jobs")) == 1
    runs = api.calls("POST", ":run")
    assert len(runs) == 2
    assert first != second
    # And each execution carries its own pilot's launch credential
    tokens = [
        {e["name"]: e["value"] for e in r.body["overrides"]["containerOverrides"][0]["env"]}
        for r in runs
    ]
    assert [t["SKYPANDA_TOKEN"] for t in tokens] == [
        "launch-credential-of-p1",
        "launch-credential-of-p2",
    ]


def test_an_existing_job_is_used_as_it_is(api: FakeCloudRun, launcher: CloudRunLauncher) -> None:
    # Given the queue's job exists already (made by an earlier scaler)
    api.jobs[JOB] = {"name": JOB}
    # When a pilot is launched
    launcher.launch(cloudrun_queue(), "p1")
    # Then nothing was created; the job was only run
    assert [(r.method, r.path) for r in api.requests] == [
        ("GET", f"/v2/{JOB}"),
        ("POST", f"/v2/{JOB}:run"),
    ]


def test_a_push_pilot_runs_on_a_job_sized_for_its_job(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # When a push-mode pilot is launched for a 2-core 6000 MB job with a long walltime
    ref = launcher.launch(cloudrun_queue(), "p9", push_job(memory_mb=6000, cores=2))
    # Then (overrides cannot set resources) a sibling job sized for it was created
    sized = f"{PARENT}/jobs/skypanda-cr-2c-6000m"
    [create] = api.calls("POST", "/jobs")
    assert create.query["jobId"] == ["skypanda-cr-2c-6000m"]
    [container] = create.body["template"]["template"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "6000Mi"}
    assert container["args"] == ["--memory-mb", "6000", "--cores", "2"]
    # And run with the pilot id, the job to push, and a timeout covering the job's walltime
    [run] = api.calls("POST", ":run")
    assert run.path == f"/v2/{sized}:run"
    assert run.body["overrides"]["containerOverrides"][0]["env"] == [
        {"name": "SKYPANDA_PILOT_ID", "value": "p9"},
        {"name": "SKYPANDA_TOKEN", "value": "launch-credential-of-p9"},
        {"name": "SKYPANDA_PUSH_JOB", "value": "job-7"},
    ]
    assert run.body["overrides"]["timeout"] == "10600s"
    assert ref.startswith(f"{sized}/executions/")


def test_a_push_job_of_the_queues_size_uses_the_queue_job(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # When a push job is exactly the queue's pilot size
    launcher.launch(cloudrun_queue(), "p9", push_job(memory_mb=4000, cores=1))
    # Then the queue's own job runs it
    assert [r.path for r in api.calls("POST", ":run")] == [f"/v2/{JOB}:run"]


def test_list_maps_executions_to_pilots_with_alive_and_exit(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given three pilots launched, and an execution someone else started on the same job
    refs = {p: launcher.launch(cloudrun_queue(), p) for p in ("p1", "p2", "p3")}
    api.executions[f"{JOB}/executions/manual"] = {"name": f"{JOB}/executions/manual"}
    # And Cloud Run finished p2's task successfully and p3's as failed
    api.executions[refs["p2"]].update(completionTime="2025-01-01T00:00:00Z", succeededCount=1)
    api.executions[refs["p3"]].update(completionTime="2025-01-01T00:00:00Z", failedCount=1)
    # When the launcher lists its pilots
    pilots = launcher.list()
    # Then the job's executions were listed and each of ours mapped back to its pilot
    assert {r.path for r in api.calls("GET", "/executions")} == {f"/v2/{JOB}/executions"}
    assert sorted(pilots, key=lambda p: p.pilot_id) == [
        LaunchedPilot("p1", refs["p1"], alive=True, exit_code=None),
        LaunchedPilot("p2", refs["p2"], alive=False, exit_code=0),
        LaunchedPilot("p3", refs["p3"], alive=False, exit_code=1),
    ]


def test_stop_cancels_the_pilots_execution(api: FakeCloudRun, launcher: CloudRunLauncher) -> None:
    # Given a running pilot
    ref = launcher.launch(cloudrun_queue(), "p1")
    # When it is stopped
    launcher.stop("p1")
    # Then its execution was cancelled, and it lists as ended with a failure
    [cancel] = api.calls("POST", ":cancel")
    assert cancel.path == f"/v2/{ref}:cancel"
    assert launcher.list() == [LaunchedPilot("p1", ref, alive=False, exit_code=1)]
    # And stopping a pilot the launcher never started sends nothing
    launcher.stop("unknown")
    assert len(api.calls("POST", ":cancel")) == 1


def test_api_failures_are_backend_unavailable(api: FakeCloudRun) -> None:
    # Given a launcher whose API does not answer (the server is gone)
    endpoint = api.endpoint
    api.close()
    launcher = CloudRunLauncher(
        server_url="https://skypanda.example.org",
        credential_for=launch_credential,
        client_options={"api_endpoint": endpoint},
        credentials=AnonymousCredentials(),
    )
    # Then launching fails as retryable (a transport error, not an API answer)
    with pytest.raises(BackendUnavailable) as e:
        launcher.launch(cloudrun_queue(), "p1")
    assert e.value.retryable


def test_an_api_error_is_backend_unavailable(api: FakeCloudRun, launcher: CloudRunLauncher) -> None:
    # Given Cloud Run fails to run the job
    api.failures[":run"] = 500
    # Then launching fails as retryable, naming the job
    with pytest.raises(BackendUnavailable, match=r"cannot run .*skypanda-cr") as e:
        launcher.launch(cloudrun_queue(), "p1")
    assert e.value.retryable


def test_non_cloudrun_queue_is_refused(launcher: CloudRunLauncher) -> None:
    with pytest.raises(InvalidInput, match="does not launch on Cloud Run"):
        launcher.launch(Queue(name="local"), "p1")


@pytest.mark.parametrize(
    ("memory_mb", "cores", "limits"),
    [
        (256, 1, {"cpu": "1", "memory": "512Mi"}),  # Cloud Run's minimum memory
        (2000, 3, {"cpu": "4", "memory": "2000Mi"}),  # CPU rounded up to an allowed value
        (10_000, 1, {"cpu": "4", "memory": "10000Mi"}),  # more than 8 GiB needs 4 CPUs
        (32 * 1024, 8, {"cpu": "8", "memory": "32768Mi"}),
    ],
)
def test_container_limits(memory_mb: int, cores: int, limits: dict[str, str]) -> None:
    assert container_limits(Resources(memory_mb=memory_mb, cores=cores)) == limits


@pytest.mark.parametrize(("memory_mb", "cores"), [(40_000, 1), (1000, 16)])
def test_sizes_beyond_a_cloud_run_task_are_refused(memory_mb: int, cores: int) -> None:
    with pytest.raises(InvalidInput, match="exceeds a Cloud Run task"):
        container_limits(Resources(memory_mb=memory_mb, cores=cores))
