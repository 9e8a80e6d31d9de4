"""CloudRunLauncher through the real google-cloud-run client against a recording local server.

There is no Cloud Run emulator: tests/gcp/recording_server.py answers the Cloud Run Admin API v2
REST calls the launcher makes, holding its state in the real run_v2 types and refusing what
Cloud Run refuses; these tests assert what a real project would receive.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from pydantic import ValidationError

from skypanda.adapters.gcp import cloudrun_launcher
from skypanda.adapters.gcp.cloudrun_jobs import label_value
from skypanda.adapters.gcp.cloudrun_launcher import (
    FINISHED_WINDOW_S,
    SIDE_JOB_IDLE_S,
    CloudRunLauncher,
)
from skypanda.adapters.gcp.cloudrun_limits import CPU_MEMORY_MIB, container_limits
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import CloudRunLauncherSpec
from skypanda.domain.models import Job, Queue, Resources
from skypanda.domain.states import JobStatus
from skypanda.ports import LaunchedPilot
from skypanda.runtime.gcp import cloudrun_factory
from tests.gcp.recording_server import (
    ALLOWED_CPUS,
    MAX_MEMORY_MIB,
    FakeCloudRun,
    limits_problem,
    mebibytes,
)

PARENT = "projects/my-project/locations/europe-west1"
JOB = f"{PARENT}/jobs/skypanda-cr"
SIDE = f"{PARENT}/jobs/skypanda-cr-2c-6000m"
SA = "pilot@my-project.iam.gserviceaccount.com"
IMAGE = "europe-docker.pkg.dev/my-project/skypanda/pilot:1"


def launch_credential(pilot_id: str) -> str:
    """Stands for PilotCredentials.issue_launch: one credential per pilot."""
    return f"launch-credential-of-{pilot_id}"


@pytest.fixture
def api() -> Iterator[FakeCloudRun]:
    fake = FakeCloudRun().start()
    yield fake
    fake.close()


def new_launcher(api: FakeCloudRun, **kwargs: Any) -> CloudRunLauncher:
    """A launcher as a (new) scale function instance makes it, on the fake API and its clock."""
    return CloudRunLauncher(
        server_url=kwargs.pop("server_url", "https://skypanda.example.org"),
        credential_for=launch_credential,
        client_options={"api_endpoint": api.endpoint},
        credentials=AnonymousCredentials(),
        clock=lambda: api.now,
        **kwargs,
    )


@pytest.fixture
def launcher(api: FakeCloudRun) -> CloudRunLauncher:
    return new_launcher(api)


def cloudrun_queue(pilot: Resources | None = None, name: str = "cr", **launcher: Any) -> Queue:
    settings: dict[str, Any] = {
        "project": "my-project",
        "region": "europe-west1",
        "job": "skypanda-cr",
        "image": IMAGE,
        "service_account": SA,
        "max_retries": 1,
        "timeout_s": 7200,
    }
    spec = CloudRunLauncherSpec(kind="cloudrun", **(settings | launcher))
    return Queue(
        name=name,
        mode="push",
        pilot_resources=pilot or Resources(memory_mb=4000),
        launcher=spec,
    )


def push_job(memory_mb: int = 6000, cores: int = 2, job_id: str = "job-7") -> Job:
    return Job(
        id=job_id,
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


def verbs(api: FakeCloudRun) -> list[tuple[str, str]]:
    return [(r.method, r.path.removeprefix("/v2/")) for r in api.requests]


# -- the queue's job ----------------------------------------------------------------------------


def test_first_launch_creates_the_queue_job_with_the_pilot_template(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given a Cloud Run queue whose job does not exist yet
    # When a pilot is launched
    launcher.launch(cloudrun_queue(), "p1")
    # Then the job was looked up, found missing, and created under the queue's job id
    assert verbs(api)[:2] == [("GET", JOB), ("POST", f"{PARENT}/jobs")]
    create = api.requests[1]
    assert create.query["jobId"] == ["skypanda-cr"]
    # And its template runs one pilot task with the image, server and queue, and no credential
    assert create.body["labels"] == {"skypanda-queue": "cr"}
    assert create.body["template"]["labels"] == {"skypanda-queue": "cr"}  # on each execution
    assert create.body["template"]["taskCount"] == 1
    task = create.body["template"]["template"]
    assert task["timeout"] == "7200s"
    assert task["maxRetries"] == 1
    assert task["serviceAccount"] == SA
    [container] = task["containers"]
    assert container["name"] == "pilot"
    assert container["image"] == IMAGE
    assert container["command"] == ["python3", "-m", "skypanda", "pilot"]
    assert container["args"] == ["--memory-mb", "4000", "--cores", "1"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "4000Mi"}
    assert env_of(container) == {
        "SKYPANDA_SERVER": "https://skypanda.example.org",
        "SKYPANDA_QUEUE": "cr",
    }
    assert "skypanda-pilot-token" not in str(create.body)  # no Secret: no deployment token


def test_a_queue_name_that_is_no_label_value_is_labelled_by_a_safe_form(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given a queue whose name Cloud Run would refuse as a label value (capitals, a dot)
    launcher.launch(cloudrun_queue(name="CERN.Batch"), "p1")
    # Then the job (which Cloud Run accepted) carries a label-safe form; the env the exact name
    [create] = api.calls("POST", "/jobs")
    assert create.body["labels"]["skypanda-queue"] == label_value("CERN.Batch")
    assert label_value("CERN.Batch").startswith("cern-batch-")
    assert label_value("CERN.Batch") != label_value("cern-batch")
    assert env_of(create.body["template"]["template"]["containers"][0])["SKYPANDA_QUEUE"] == (
        "CERN.Batch"
    )


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
    assert ref.startswith(f"{JOB}/executions/skypanda-cr-")
    assert ref in api.executions


def test_a_second_launch_reuses_the_job(api: FakeCloudRun, launcher: CloudRunLauncher) -> None:
    # Given a pilot already launched (the job was created)
    first = launcher.launch(cloudrun_queue(), "p1")
    # When another pilot is launched on the same queue
    second = launcher.launch(cloudrun_queue(), "p2")
    # Then the job was looked up and created once, and run twice, as two executions
    assert len(api.calls("GET", "/jobs/skypanda-cr")) == 1
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


def test_an_existing_job_as_wanted_is_not_updated(api: FakeCloudRun) -> None:
    # Given the queue's job made by an earlier scaler, since given defaults and a label by
    # Cloud Run or someone else
    new_launcher(api).launch(cloudrun_queue(), "p1")
    api.jobs[JOB].labels["team"] = "atlas"
    api.jobs[
        JOB
    ].template.template.execution_environment = (
        run_v2.ExecutionEnvironment.EXECUTION_ENVIRONMENT_GEN2
    )
    api.requests.clear()
    # When a new scaler launches a pilot on the same queue
    new_launcher(api).launch(cloudrun_queue(), "p2")
    # Then the job was looked up and run: nothing created, nothing updated
    assert verbs(api) == [("GET", JOB), ("POST", f"{JOB}:run")]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image": "europe-docker.pkg.dev/my-project/skypanda/pilot:2"}, "image"),
        ({"timeout_s": 600}, "timeout"),
        ({"service_account": "other@my-project.iam.gserviceaccount.com"}, "serviceAccount"),
        ({"max_retries": 0}, "maxRetries"),
    ],
)
def test_an_existing_job_is_updated_when_the_queue_changed(
    api: FakeCloudRun, change: dict[str, Any], field: str
) -> None:
    # Given the queue's job made by an earlier scaler, and a running pilot of it
    new_launcher(api).launch(cloudrun_queue(), "p1")
    generation = api.jobs[JOB].generation
    api.requests.clear()
    # When the queue's settings changed and a new scaler launches a pilot
    new_launcher(api).launch(cloudrun_queue(**change), "p2")
    # Then the job was updated to the new template (the whole job), then run
    assert verbs(api) == [("GET", JOB), ("PATCH", JOB), ("POST", f"{JOB}:run")]
    [patch] = api.calls("PATCH", JOB)
    task = patch.body["template"]["template"]
    assert field in task or field in task["containers"][0]
    assert api.jobs[JOB].generation == generation + 1


def test_a_queue_changed_under_a_running_launcher_updates_its_job(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given a launcher that made the queue's job (and remembers it)
    launcher.launch(cloudrun_queue(), "p1")
    # When the queue's pilots grow and the same launcher launches again
    launcher.launch(cloudrun_queue(pilot=Resources(memory_mb=6000, cores=2)), "p2")
    # Then it looked the job up again and updated its size
    [patch] = api.calls("PATCH", JOB)
    [container] = patch.body["template"]["template"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "6000Mi"}
    assert container["args"] == ["--memory-mb", "6000", "--cores", "2"]
    # And a third launch of the same queue neither looks nor updates
    launcher.launch(cloudrun_queue(pilot=Resources(memory_mb=6000, cores=2)), "p3")
    assert len(api.calls("GET", JOB)) == 2
    assert len(api.calls("PATCH", JOB)) == 1


def test_a_size_cloud_run_wants_more_memory_for_runs_with_more(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given a queue of 4-core pilots with 1000 MB (Cloud Run wants 2 GiB for 4 CPUs)
    queue = cloudrun_queue(pilot=Resources(memory_mb=1000, cores=4))
    # When a pilot is launched: Cloud Run (which refuses a pair off its table) took the job
    launcher.launch(queue, "p1")
    [container] = api.jobs[JOB].template.template.containers
    assert dict(container.resources.limits) == {"cpu": "4", "memory": "2048Mi"}
    # And the pilot offers what the queue says
    assert list(container.args) == ["--memory-mb", "1000", "--cores", "4"]


def test_a_push_pilot_runs_on_a_job_sized_for_its_job(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # When a push-mode pilot is launched for a 2-core 6000 MB job with a long walltime
    ref = launcher.launch(cloudrun_queue(), "p9", push_job(memory_mb=6000, cores=2))
    # Then (overrides cannot set resources) a side job sized for it was created, labelled as one
    [create] = api.calls("POST", "/jobs")
    assert create.query["jobId"] == ["skypanda-cr-2c-6000m"]
    assert create.body["labels"] == {
        "skypanda-queue": "cr",
        "skypanda-size": "2c-6000m",
        "skypanda-main": "skypanda-cr",
    }
    [container] = create.body["template"]["template"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "6000Mi"}
    assert container["args"] == ["--memory-mb", "6000", "--cores", "2"]
    # And run with the pilot id, the job to push, and a timeout covering the job's walltime
    [run] = api.calls("POST", ":run")
    assert run.path == f"/v2/{SIDE}:run"
    assert run.body["overrides"]["containerOverrides"][0]["env"] == [
        {"name": "SKYPANDA_PILOT_ID", "value": "p9"},
        {"name": "SKYPANDA_TOKEN", "value": "launch-credential-of-p9"},
        {"name": "SKYPANDA_PUSH_JOB", "value": "job-7"},
    ]
    assert run.body["overrides"]["timeout"] == "10600s"
    assert ref.startswith(f"{SIDE}/executions/")


def test_a_push_job_of_the_queues_size_uses_the_queue_job(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # When a push job is exactly the queue's pilot size
    launcher.launch(cloudrun_queue(), "p9", push_job(memory_mb=4000, cores=1))
    # Then the queue's own job runs it
    assert [r.path for r in api.calls("POST", ":run")] == [f"/v2/{JOB}:run"]


# -- list, stop, and a cold start ---------------------------------------------------------------


def test_list_maps_executions_to_pilots_with_alive_and_exit(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given three pilots launched
    refs = {p: launcher.launch(cloudrun_queue(), p) for p in ("p1", "p2", "p3")}
    # And Cloud Run finished p2's task successfully and p3's as failed
    api.finish(refs["p2"], succeeded=True)
    api.finish(refs["p3"], succeeded=False)
    # When the launcher lists its pilots
    pilots = launcher.list()
    # Then skypanda's jobs and their executions were listed (page by page), each execution
    # mapped back to its pilot
    assert {r.path for r in api.calls("GET", "/executions")} == {f"/v2/{JOB}/executions"}
    assert len(api.calls("GET", "/executions")) == 2  # three executions, two a page
    assert sorted(pilots, key=lambda p: p.pilot_id) == [
        LaunchedPilot("p1", refs["p1"], alive=True, exit_code=None),
        LaunchedPilot("p2", refs["p2"], alive=False, exit_code=0),
        LaunchedPilot("p3", refs["p3"], alive=False, exit_code=1),
    ]


def test_a_cold_start_sees_and_stops_the_pilots_an_earlier_instance_launched(
    api: FakeCloudRun,
) -> None:
    # Given pilots launched by a scale instance that is gone: two on the queue's job, one on a
    # side job, one of which has ended
    earlier = new_launcher(api)
    refs = {p: earlier.launch(cloudrun_queue(), p) for p in ("p1", "p2")}
    refs["p3"] = earlier.launch(cloudrun_queue(), "p3", push_job())
    api.finish(refs["p2"], succeeded=False)
    # When a new instance (the factory gave it the queue's location) lists
    cold = new_launcher(api, locations=[PARENT])
    pilots = cold.list()
    # Then it sees them all, running or ended
    assert sorted(pilots, key=lambda p: p.pilot_id) == [
        LaunchedPilot("p1", refs["p1"], alive=True),
        LaunchedPilot("p2", refs["p2"], alive=False, exit_code=1),
        LaunchedPilot("p3", refs["p3"], alive=True),
    ]
    # And another new instance that never listed can stop one: its execution is cancelled
    new_launcher(api, locations=[PARENT]).stop("p3")
    assert [r.path for r in api.calls("POST", ":cancel")] == [f"/v2/{refs['p3']}:cancel"]
    assert LaunchedPilot("p3", refs["p3"], alive=False, exit_code=1) in cold.list()


def test_a_cold_start_reads_the_pilot_from_the_task_when_the_execution_lacks_it(
    api: FakeCloudRun,
) -> None:
    # Given a Cloud Run that leaves the overrides out of an execution's template
    api.overrides_in_template = False
    ref = new_launcher(api).launch(cloudrun_queue(), "p1")
    # When a new instance lists, twice
    cold = new_launcher(api, locations=[PARENT])
    assert cold.list() == [LaunchedPilot("p1", ref, alive=True)]
    assert cold.list() == [LaunchedPilot("p1", ref, alive=True)]
    # Then it read the pilot id from the execution's task, once
    assert [r.path for r in api.calls("GET", "/tasks")] == [f"/v2/{ref}/tasks"]


def test_executions_that_are_no_pilot_of_this_deployment_are_left_out(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given our pilot, another deployment's pilot on a job of the same project, and a run of
    # our job by hand (no pilot id)
    ours = launcher.launch(cloudrun_queue(), "p1")
    other = new_launcher(api, server_url="https://other.example.org")
    other.launch(cloudrun_queue(job="other-cr"), "x1")
    with run_v2.JobsClient(
        transport="rest",
        client_options={"api_endpoint": api.endpoint},
        credentials=AnonymousCredentials(),
    ) as client:
        client.run_job(name=JOB)
    # Then a new instance sees only our pilot, and stops only ours
    cold = new_launcher(api, locations=[PARENT])
    assert cold.list() == [LaunchedPilot("p1", ours, alive=True)]
    cold.stop("x1")
    assert api.calls("POST", ":cancel") == []


def test_an_ended_pilot_is_reported_until_forgotten_or_long_ended(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given two ended pilots
    p1 = launcher.launch(cloudrun_queue(), "p1")
    p2 = launcher.launch(cloudrun_queue(), "p2")
    api.finish(p1, succeeded=True)
    api.finish(p2, succeeded=True)
    # When the scaler forgets p1
    launcher.forget("p1")
    # Then only p2 is reported, and a new instance, which was not told, reports both
    assert launcher.list() == [LaunchedPilot("p2", p2, alive=False, exit_code=0)]
    assert len(new_launcher(api, locations=[PARENT]).list()) == 2
    # And once they ended longer ago than the window, neither is reported any more
    api.now += FINISHED_WINDOW_S + 1
    assert launcher.list() == []
    assert new_launcher(api, locations=[PARENT]).list() == []


def test_stop_cancels_the_pilots_execution(api: FakeCloudRun, launcher: CloudRunLauncher) -> None:
    # Given a running pilot
    ref = launcher.launch(cloudrun_queue(), "p1")
    # When it is stopped
    launcher.stop("p1")
    # Then its execution was cancelled, and it lists as ended with a failure
    [cancel] = api.calls("POST", ":cancel")
    assert cancel.path == f"/v2/{ref}:cancel"
    assert launcher.list() == [LaunchedPilot("p1", ref, alive=False, exit_code=1)]
    # And stopping it again (Cloud Run refuses: it has ended) is no error
    launcher.stop("p1")
    # And stopping a pilot Cloud Run has never seen sends nothing
    launcher.stop("unknown")
    assert len(api.calls("POST", ":cancel")) == 2


# -- side jobs ----------------------------------------------------------------------------------


def test_an_idle_side_job_is_deleted_but_never_while_it_runs(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given an ended pilot on the queue's job, and a push pilot on a side job, still running
    # long after it started
    api.finish(launcher.launch(cloudrun_queue(), "p1"), succeeded=True)
    ref = launcher.launch(cloudrun_queue(), "p9", push_job())
    api.now += SIDE_JOB_IDLE_S * 2
    # When the launcher lists: the side job is kept (an execution runs)
    launcher.list()
    assert api.calls("DELETE", "") == []
    # And when the pilot ended, the job is kept while not idle long enough
    api.finish(ref, succeeded=True)
    api.now += SIDE_JOB_IDLE_S - 1
    launcher.list()
    assert api.calls("DELETE", "") == []
    # Then once it was idle that long, it is deleted with the etag it was listed with; the
    # queue's own job never is
    api.now += 1
    etag = api.jobs[SIDE].etag
    launcher.list()
    [delete] = api.calls("DELETE", "")
    assert delete.path == f"/v2/{SIDE}"
    assert delete.query["etag"] == [etag]
    assert set(api.jobs) == {JOB}
    # And a later push pilot of that size makes it again
    launcher.launch(cloudrun_queue(), "p10", push_job())
    assert SIDE in api.jobs


def test_a_side_job_started_again_since_it_was_listed_is_kept(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given an idle side job
    ref = launcher.launch(cloudrun_queue(), "p9", push_job())
    api.finish(ref, succeeded=True)
    api.now += SIDE_JOB_IDLE_S + 1
    # When another scaler runs it between the listing and the deletion
    calls = itertools.count()
    original = launcher._executions_of

    def listing(job_name: str) -> list[run_v2.Execution]:
        if job_name == SIDE and next(calls) == 1:  # the second look: just before deleting
            new_launcher(api).launch(cloudrun_queue(), "p10", push_job())
        return original(job_name)

    launcher._executions_of = listing  # type: ignore[method-assign]
    launcher.list()
    # Then the side job is kept
    assert api.calls("DELETE", "") == []
    assert SIDE in api.jobs


def test_a_side_job_the_queue_no_longer_uses_goes_sooner(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    # Given a side job whose pilot ended, and the queue's pilots are now of its size (push jobs
    # of that size run on the queue's job)
    ref = launcher.launch(cloudrun_queue(), "p9", push_job())
    api.finish(ref, succeeded=True)
    launcher.launch(cloudrun_queue(pilot=Resources(memory_mb=6000, cores=2)), "p10")
    # When the scaler lists after the reporting window (not the whole idle bound)
    api.now += FINISHED_WINDOW_S + 1
    launcher.list()
    # Then the side job is deleted
    assert [r.path for r in api.calls("DELETE", "")] == [f"/v2/{SIDE}"]


def test_a_launch_on_a_side_job_deleted_meanwhile_makes_it_again(api: FakeCloudRun) -> None:
    # Given a launcher that made a side job, which another scaler deleted since
    launcher = new_launcher(api)
    launcher.launch(cloudrun_queue(), "p9", push_job())
    del api.jobs[SIDE]
    # When it launches on it again
    ref = launcher.launch(cloudrun_queue(), "p10", push_job(job_id="job-8"))
    # Then the run found no job, which was made again and run
    assert ref.startswith(f"{SIDE}/executions/")
    assert len(api.calls("POST", "/jobs")) == 2


# -- failures -----------------------------------------------------------------------------------


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


def test_a_listing_error_is_backend_unavailable(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    launcher.launch(cloudrun_queue(), "p1")
    api.failures["/executions"] = 503
    with pytest.raises(BackendUnavailable, match="cannot list executions"):
        launcher.list()


def test_non_cloudrun_queue_is_refused(launcher: CloudRunLauncher) -> None:
    with pytest.raises(InvalidInput, match="does not launch on Cloud Run"):
        launcher.launch(Queue(name="local"), "p1")


def test_a_queue_too_big_for_cloud_run_is_refused_before_any_call(
    api: FakeCloudRun, launcher: CloudRunLauncher
) -> None:
    with pytest.raises(
        InvalidInput, match=r"queue cr: 16 cores exceeds a Cloud Run task \(at most 8 CPUs\)"
    ):
        launcher.launch(cloudrun_queue(pilot=Resources(memory_mb=4000, cores=16)), "p1")
    assert api.requests == []


def test_the_factory_gives_the_launcher_its_queues_location(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: dict[str, Any] = {}
    monkeypatch.setattr(cloudrun_launcher, "CloudRunLauncher", lambda **kw: made.update(kw))
    cloudrun_factory("https://skypanda.example.org", launch_credential)(cloudrun_queue())
    assert made["locations"] == [PARENT]


# -- CPU and memory -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory_mb", "cores", "limits"),
    [
        (256, 1, {"cpu": "1", "memory": "512Mi"}),  # Cloud Run's least memory
        (1000, 4, {"cpu": "4", "memory": "2048Mi"}),  # 4 CPUs need 2 GiB
        (1000, 6, {"cpu": "6", "memory": "4096Mi"}),  # 6 CPUs need 4 GiB
        (2000, 3, {"cpu": "4", "memory": "2048Mi"}),  # no 3: rounded up to 4, and its memory
        (4096, 1, {"cpu": "1", "memory": "4096Mi"}),
        (4097, 1, {"cpu": "2", "memory": "4097Mi"}),  # more than 4 GiB needs 2 CPUs
        (10_000, 1, {"cpu": "4", "memory": "10000Mi"}),  # more than 8 GiB needs 4 CPUs
        (20_000, 2, {"cpu": "6", "memory": "20000Mi"}),
        (32 * 1024, 8, {"cpu": "8", "memory": "32768Mi"}),
    ],
)
def test_container_limits(memory_mb: int, cores: int, limits: dict[str, str]) -> None:
    assert container_limits(Resources(memory_mb=memory_mb, cores=cores), "cr") == limits


@pytest.mark.parametrize(
    ("memory_mb", "cores", "limit"),
    [(40_000, 1, "at most 32768 MiB"), (32 * 1024 + 1, 8, "32 GiB"), (1000, 9, "8 CPUs")],
)
def test_sizes_beyond_a_cloud_run_task_are_refused_naming_queue_and_limit(
    memory_mb: int, cores: int, limit: str
) -> None:
    with pytest.raises(InvalidInput, match=f"queue big: .*exceeds a Cloud Run task.*{limit}"):
        container_limits(Resources(memory_mb=memory_mb, cores=cores), "big")


def test_every_size_gets_the_smallest_limits_cloud_run_accepts() -> None:
    # For every core count and every memory size (MiB by MiB) up to past the maximum:
    for cores, memory_mb in itertools.product(range(1, 11), range(1, MAX_MEMORY_MIB + 3)):
        size = Resources.model_construct(memory_mb=memory_mb, cores=cores)  # valid: fast
        fits = cores <= max(ALLOWED_CPUS) and memory_mb <= MAX_MEMORY_MIB
        if not fits:  # refused exactly when no Cloud Run task holds it
            with pytest.raises(InvalidInput):
                container_limits(size, "q")
            continue
        limits = container_limits(size, "q")
        cpus, mib = int(limits["cpu"]), mebibytes(limits["memory"])
        # Cloud Run takes the pair (its published rules, recording_server.limits_problem)
        assert limits_problem(limits["cpu"], limits["memory"]) is None, (size, limits)
        # it holds the size, with the size's own memory unless Cloud Run wants more
        assert cpus >= cores and mib >= memory_mb
        assert mib == memory_mb or limits_problem(limits["cpu"], f"{memory_mb}Mi") is not None
        # and no fewer allowed CPUs would do
        assert all(
            limits_problem(str(c), f"{max(memory_mb, 512)}Mi") is not None
            and limits_problem(str(c), limits["memory"]) is not None
            for c in ALLOWED_CPUS
            if cores <= c < cpus
        ), (size, limits)


def test_the_table_is_the_published_one() -> None:
    assert tuple(CPU_MEMORY_MIB) == ALLOWED_CPUS
    for cpus, (least, most) in CPU_MEMORY_MIB.items():
        assert limits_problem(str(cpus), f"{least}Mi") is None
        assert limits_problem(str(cpus), f"{most}Mi") is None
        assert limits_problem(str(cpus), f"{least - 1}Mi") is not None
        assert limits_problem(str(cpus), f"{most + 1}Mi") is not None


# -- regions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "region",
    [
        "us-central1",
        "us-east4",
        "europe-west1",
        "europe-west10",
        "europe-west12",
        "europe-southwest1",
        "northamerica-northeast2",
        "northamerica-south1",
        "southamerica-west1",
        "asia-southeast2",
        "australia-southeast1",
        "me-central1",
        "me-west1",
        "africa-south1",
        "u-france-east1",
    ],
)
def test_real_regions_are_accepted(region: str) -> None:
    assert cloudrun_queue(region=region).launcher.region == region  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "region",
    [
        "",
        "global",
        "us",
        "us-central",
        "uscentral1",
        "us-central1-a",  # a zone
        "us-central0",
        "us-central01",
        "us-central123",
        "US-CENTRAL1",
        "us_central1",
        "us-central1 ",
        "europe-west1\n",
        "-central1",
        "a-b-c-d1",
        "europe-west1/jobs",
    ],
)
def test_other_regions_are_refused(region: str) -> None:
    with pytest.raises(ValidationError, match="region"):
        cloudrun_queue(region=region)
