"""Specification of the value objects: bad input fails at construction, naming the field."""

import re
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.jobflow import apply_report, new_job
from skypanda.domain.models import (
    Job,
    JobReport,
    OutputFile,
    Queue,
    Resources,
    Task,
    TaskSpec,
    jsonable,
    parse_duration,
)
from skypanda.domain.splitter import check_split, split
from skypanda.domain.states import JobStatus

VALID_TASK: dict[str, Any] = {"name": "reco", "command": ["run", "{input}"], "inputs": ["a"]}
DROP = object()  # marks a field to remove from VALID_TASK


def task_data(**overrides: Any) -> dict[str, Any]:
    data = {**VALID_TASK, **overrides}
    return {k: v for k, v in data.items() if v is not DROP}


def rejected(model: type[BaseModel], data: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors pydantic reports for `data` (which must be rejected)."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value.errors()


# --- TaskSpec ----------------------------------------------------------------------------------


def test_a_minimal_task_spec_gets_the_documented_defaults() -> None:
    spec = TaskSpec.model_validate(VALID_TASK)
    assert spec.inputs == ["a"]
    assert spec.n_jobs is None
    assert spec.files_per_job == 1
    assert spec.max_attempts == 3
    assert spec.priority == 0
    assert spec.queue == "local"
    assert spec.env == {}
    assert spec.allow_partial is False
    assert spec.resources == Resources(memory_mb=2000, cores=1, walltime=3600.0)


@pytest.mark.parametrize(
    ("overrides", "loc", "says"),
    [
        pytest.param({"command": DROP}, ("command",), "Field required", id="missing-command"),
        pytest.param({"command": []}, ("command",), "at least 1", id="empty-command"),
        pytest.param({"command": [" ", "x"]}, ("command",), "first word", id="blank-program"),
        pytest.param({"name": DROP}, ("name",), "Field required", id="missing-name"),
        pytest.param({"name": "has space"}, ("name",), "pattern", id="bad-name"),
        pytest.param({"name": "-leading"}, ("name",), "pattern", id="name-leading-dash"),
        pytest.param({"inputs": []}, ("inputs",), "inputs is empty", id="empty-inputs"),
        pytest.param({"n_jobs": 5}, (), "not both", id="inputs-and-n_jobs"),
        pytest.param({"inputs": DROP}, (), "either inputs", id="neither-inputs-nor-n_jobs"),
        pytest.param(
            {"inputs": DROP, "n_jobs": 2, "files_per_job": 3},
            (),
            "files_per_job needs inputs",
            id="files_per_job-with-n_jobs",
        ),
        pytest.param({"inputs": DROP, "n_jobs": 0}, ("n_jobs",), "greater than", id="n_jobs-0"),
        pytest.param(
            {"inputs": DROP, "n_jobs": 10_000_001}, ("n_jobs",), "less than", id="n_jobs-too-big"
        ),
        pytest.param({"files_per_job": 0}, ("files_per_job",), "greater", id="files_per_job-0"),
        pytest.param({"max_attempts": 0}, ("max_attempts",), "greater", id="max_attempts-0"),
        pytest.param({"max_attempts": 101}, ("max_attempts",), "less", id="max_attempts-101"),
        pytest.param({"queue": "a/b"}, ("queue",), "pattern", id="bad-queue"),
        pytest.param(
            {"resources": {"memory_mb": -1}},
            ("resources", "memory_mb"),
            "greater than or equal to 1",
            id="negative-memory",
        ),
        pytest.param(
            {"resources": {"cores": 0}}, ("resources", "cores"), "greater", id="zero-cores"
        ),
        pytest.param(
            {"resources": {"walltime": "10x"}},
            ("resources", "walltime"),
            "not a duration: '10x'",
            id="walltime-10x",
        ),
        pytest.param(
            {"resources": {"walltime": "0"}}, ("resources", "walltime"), "greater", id="walltime-0"
        ),
        pytest.param(
            {"resources": {"walltime": -5}},
            ("resources", "walltime"),
            "greater",
            id="walltime-negative",
        ),
        pytest.param(
            {"resources": {"walltime": "-5m"}},
            ("resources", "walltime"),
            "not a duration",
            id="walltime-negative-string",
        ),
        pytest.param({"bogus": 1}, ("bogus",), "Extra inputs", id="unknown-field"),
        pytest.param(
            {"resources": {"gpus": 1}}, ("resources", "gpus"), "Extra inputs", id="unknown-resource"
        ),
        pytest.param({"env": {"A": 1}}, ("env", "A"), "string", id="env-not-strings"),
    ],
)
def test_task_spec_errors_name_the_field(
    overrides: dict[str, Any], loc: tuple[str, ...], says: str
) -> None:
    # Given a task that is wrong in one way, When it is validated
    errors = rejected(TaskSpec, task_data(**overrides))

    # Then exactly one error is reported, located at the field, with a message that explains it
    assert len(errors) == 1
    (error,) = errors
    assert error["loc"] == loc
    assert says in error["msg"]


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"n_jobs": 5}, ("inputs", "n_jobs")),
        ({"inputs": DROP}, ("inputs", "n_jobs")),
        ({"inputs": DROP, "n_jobs": 2, "files_per_job": 3}, ("files_per_job", "n_jobs")),
    ],
)
def test_cross_field_errors_name_both_fields_in_the_message(
    overrides: dict[str, Any], fields: tuple[str, ...]
) -> None:
    # Whole-model checks have no single location, so their message names the fields
    (error,) = rejected(TaskSpec, task_data(**overrides))
    for field in fields:
        assert field in error["msg"]


@pytest.mark.parametrize(
    ("walltime", "seconds"),
    [
        ("10m", 600.0),
        ("90", 90.0),
        ("30s", 30.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        (" 10 m ", 600.0),
        (45, 45.0),
        (0.5, 0.5),
    ],
)
def test_walltime_accepts_seconds_or_a_duration_string(walltime: Any, seconds: float) -> None:
    spec = TaskSpec.model_validate(task_data(resources={"walltime": walltime}))
    assert spec.resources.walltime_s == seconds


def test_walltime_may_also_be_given_by_its_field_name() -> None:
    assert Resources(walltime_s="10m").walltime_s == 600.0


@pytest.mark.parametrize("text", ["10x", "", "m", "1e3", "10 mins", "1h30m"])
def test_parse_duration_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_task_spec_is_frozen() -> None:
    spec = TaskSpec.model_validate(VALID_TASK)
    with pytest.raises(ValidationError, match="frozen"):
        spec.name = "other"


def test_a_task_spec_survives_a_json_round_trip() -> None:
    # Given a spec with non-default values, When dumped to JSON values and read back,
    # Then it is the same spec (what the store does)
    spec = TaskSpec.model_validate(
        task_data(
            inputs=["a", "b", "c"],
            files_per_job=2,
            resources={"memory_mb": 500, "cores": 2, "walltime": "1h"},
            env={"K": "v"},
            allow_partial=True,
        )
    )
    assert TaskSpec.model_validate(jsonable(spec)) == spec


# --- Resources ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("need", "capacity", "fits"),
    [
        (Resources(memory_mb=2000, cores=1), Resources(memory_mb=4000, cores=1), True),
        (Resources(memory_mb=4000, cores=2), Resources(memory_mb=4000, cores=2), True),
        (Resources(memory_mb=4001, cores=1), Resources(memory_mb=4000, cores=8), False),
        (Resources(memory_mb=100, cores=2), Resources(memory_mb=4000, cores=1), False),
        # walltime is not a capacity: a pilot's walltime does not limit what it accepts
        (Resources(walltime=7200), Resources(walltime=60), True),
    ],
)
def test_resources_fit_by_memory_and_cores(
    need: Resources, capacity: Resources, fits: bool
) -> None:
    assert need.fits(capacity) is fits


# --- Queue -------------------------------------------------------------------------------------


def test_a_queue_with_only_a_name_is_valid() -> None:
    queue = Queue(name="local")
    assert queue.min_pilots <= queue.max_pilots
    assert queue.heartbeat_timeout_s > queue.heartbeat_interval_s


def test_queue_rejects_min_pilots_above_max_pilots() -> None:
    (error,) = rejected(Queue, {"name": "q", "min_pilots": 3, "max_pilots": 2})
    assert "min_pilots (3) exceeds max_pilots (2)" in error["msg"]


def test_queue_accepts_min_pilots_equal_to_max_pilots() -> None:
    assert Queue(name="q", min_pilots=2, max_pilots=2).max_pilots == 2


@pytest.mark.parametrize(("interval", "timeout"), [(5, 5), (10, 5), ("1m", "60s"), ("2m", 60)])
def test_queue_rejects_a_heartbeat_timeout_not_longer_than_the_interval(
    interval: Any, timeout: Any
) -> None:
    data = {"name": "q", "heartbeat_interval_s": interval, "heartbeat_timeout_s": timeout}
    (error,) = rejected(Queue, data)
    assert "heartbeat_timeout_s must be longer than heartbeat_interval_s" in error["msg"]


GKE = {"kind": "gke", "image": "pilot:1"}
CLOUD_RUN = {"kind": "cloudrun", "project": "my-project", "region": "us-central1", "job": "p",
             "image": "pilot:1"}  # fmt: skip


def _cadence(queue: Queue) -> tuple[float, float, float]:
    return queue.heartbeat_interval_s, queue.heartbeat_timeout_s, queue.log_flush_interval_s


@pytest.mark.parametrize(
    ("launcher", "cadence"),
    [(None, (5.0, 60.0, 2.0)), (GKE, (300.0, 900.0, 60.0)), (CLOUD_RUN, (300.0, 900.0, 60.0))],
)
def test_a_queue_s_cadence_defaults_to_snappy_locally_and_cheap_on_google_cloud(
    launcher: dict[str, str] | None, cadence: tuple[float, float, float]
) -> None:
    data: dict[str, Any] = (
        {"name": "q"} if launcher is None else {"name": "q", "launcher": launcher}
    )
    queue = Queue.model_validate(data)
    assert _cadence(queue) == cadence
    # and the defaults are stored as values: the queue reads back the same
    assert Queue.model_validate_json(queue.model_dump_json()) == queue


def test_a_cloud_queue_keeps_the_cadence_it_is_given() -> None:
    queue = Queue.model_validate(
        {"name": "q", "launcher": GKE, "heartbeat_interval_s": 5, "heartbeat_timeout_s": 60,
         "log_flush_interval_s": "2s"}
    )  # fmt: skip
    assert _cadence(queue) == (5.0, 60.0, 2.0)


@pytest.mark.parametrize(
    ("launcher", "interval", "timeout"),
    [(None, "100s", 300.0), (None, 10, 60.0), (GKE, 600, 1800.0)],
)
def test_a_heartbeat_interval_given_alone_leaves_room_for_late_beats(
    launcher: dict[str, str] | None, interval: Any, timeout: float
) -> None:
    # a timeout left out is the launcher's default, or 3 intervals if that is longer
    data: dict[str, Any] = {"name": "q", "heartbeat_interval_s": interval}
    if launcher is not None:
        data["launcher"] = launcher
    assert Queue.model_validate(data).heartbeat_timeout_s == timeout


def test_a_heartbeat_slower_than_the_pilot_credential_allows_is_refused() -> None:
    (error,) = rejected(Queue, {"name": "q", "launcher": GKE, "heartbeat_interval_s": "11m"})
    assert "heartbeat_interval_s must be at most 600 s" in error["msg"]


def test_queue_durations_accept_duration_strings() -> None:
    queue = Queue(name="q", heartbeat_interval_s="10s", heartbeat_timeout_s="2m")
    assert (queue.heartbeat_interval_s, queue.heartbeat_timeout_s) == (10.0, 120.0)


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"mode": "poll"}, ("mode",)),
        ({"min_pilots": -1}, ("min_pilots",)),
        ({"max_pilots": 10_001}, ("max_pilots",)),
        ({"jobs_per_acquire": 0}, ("jobs_per_acquire",)),
        ({"idle_timeout_s": "soon"}, ("idle_timeout_s",)),
        ({"name": ""}, ("name",)),
        ({"extra": True}, ("extra",)),
    ],
)
def test_queue_field_errors_name_the_field(overrides: dict[str, Any], loc: tuple[str, ...]) -> None:
    (error,) = rejected(Queue, {"name": "q", **overrides})
    assert error["loc"] == loc


# --- JobReport ---------------------------------------------------------------------------------


def report(**overrides: Any) -> dict[str, Any]:
    return {"job_id": "j1", "attempt": 1, "status": "running", **overrides}


@pytest.mark.parametrize("status", ["starting", "running", "finished", "failed"])
def test_a_pilot_may_report_what_it_sees_a_job_do(status: str) -> None:
    assert JobReport.model_validate(report(status=status)).status is JobStatus(status)


@pytest.mark.parametrize("status", ["defined", "activated", "sent", "cancelled", "closed"])
def test_a_pilot_may_not_report_server_side_states(status: str) -> None:
    # Given a report of a state only the server sets, Then it is rejected, naming the status
    (error,) = rejected(JobReport, report(status=status))
    assert error["loc"] == ("status",)
    assert f"a pilot cannot report {status}" in error["msg"]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"status": "exploded"}, ("status",)),
        ({"attempt": 0}, ("attempt",)),
        ({"error_diag": "x" * 4001}, ("error_diag",)),
        ({"job_id": None}, ("job_id",)),
        ({"pilot": "p1"}, ("pilot",)),
    ],
)
def test_job_report_field_errors_name_the_field(
    overrides: dict[str, Any], loc: tuple[str, ...]
) -> None:
    (error,) = rejected(JobReport, report(**overrides))
    assert error["loc"] == loc


# --- stored objects ----------------------------------------------------------------------------


def test_a_job_is_changed_only_by_copying() -> None:
    # Given a stored job
    job = Job(
        id="j1",
        task_id="t1",
        index=0,
        status=JobStatus.ACTIVATED,
        queue="local",
        command=["true"],
        created_at=1.0,
        updated_at=1.0,
    )
    # Then it cannot be mutated in place
    with pytest.raises(ValidationError, match="frozen"):
        job.status = JobStatus.SENT
    # And a change is a new object, the original untouched
    sent = job.model_copy(update={"status": JobStatus.SENT, "pilot_id": "p1"})
    assert (sent.status, sent.pilot_id) == (JobStatus.SENT, "p1")
    assert (job.status, job.pilot_id) == (JobStatus.ACTIVATED, None)
    # And its JSON form carries statuses as plain strings
    assert jsonable(sent)["status"] == "sent"
    assert Job.model_validate(jsonable(sent)) == sent


def test_every_error_code_is_documented_in_the_readme() -> None:
    # The README's table is what users read: it must list every code with its name and meaning
    from pathlib import Path

    from skypanda.wire.codes import DESCRIPTIONS, NOT_COUNTED, ErrorCode

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for code in ErrorCode:
        counted = "no" if code in NOT_COUNTED else "yes"
        assert f"| {int(code)} | `{code.name}` | {DESCRIPTIONS[code]} | {counted} |" in readme


# --- data staging ------------------------------------------------------------------------------

SHA = "0" * 64


def test_a_task_stages_nothing_and_uploads_nothing_by_default() -> None:
    spec = TaskSpec.model_validate(VALID_TASK)
    assert (spec.stage_in, spec.outputs) == (False, [])


def test_a_staged_task_takes_fetchable_urls_and_relative_output_patterns() -> None:
    spec = TaskSpec.model_validate(
        task_data(
            inputs=["file:///d/a.txt", "https://h/b.txt?sig=1", "gs://bk/run/c.root"],
            stage_in=True,
            outputs=["*.txt", "plots/**/*.png"],
        )
    )
    assert spec.stage_in
    assert spec.outputs == ["*.txt", "plots/**/*.png"]


@pytest.mark.parametrize(
    ("overrides", "loc", "says"),
    [
        pytest.param({"outputs": ["/abs/*.txt"]}, ("outputs",), "relative", id="absolute"),
        pytest.param({"outputs": ["../*.txt"]}, ("outputs",), "climb out", id="dotdot"),
        pytest.param({"outputs": ["a/../../x"]}, ("outputs",), "climb out", id="inner-dotdot"),
        pytest.param({"outputs": [""]}, ("outputs",), "1 to 256", id="empty-pattern"),
        pytest.param({"outputs": ["*"] * 101}, ("outputs",), "at most 100", id="too-many-patterns"),
    ],
)
def test_staging_errors_name_the_field_or_the_input(
    overrides: dict[str, Any], loc: tuple[str, ...], says: str
) -> None:
    (error,) = rejected(TaskSpec, task_data(**overrides))
    assert error["loc"] == loc
    assert says in error["msg"]


@pytest.mark.parametrize(
    ("overrides", "loc", "says"),
    [
        pytest.param(
            {"stage_in": True, "inputs": ["/plain/path"]}, (), "cannot stage in", id="no-scheme"
        ),
        pytest.param(
            {"stage_in": True, "inputs": ["s3://b/o"]}, (), "cannot stage in", id="bad-scheme"
        ),
        pytest.param(
            {"stage_in": True, "inputs": ["https://h/"]}, (), "names no file", id="no-file-name"
        ),
        pytest.param(
            {"stage_in": True, "inputs": ["gs:///o"]}, (), "no bucket", id="gs-without-bucket"
        ),
        pytest.param(
            {"stage_in": True, "inputs": ["gs://a/x.txt", "gs://b/x.txt"], "files_per_job": 2},
            (),
            "both be staged in as 'x.txt'",
            id="same-local-name-in-one-job",
        ),
    ],
)
def test_inputs_that_cannot_be_staged_in_are_refused_at_submit_naming_the_input(
    overrides: dict[str, Any], loc: tuple[str, ...], says: str
) -> None:
    # Given a task that stages its inputs in, When it is checked before being stored
    spec = TaskSpec.model_validate(task_data(**overrides))
    # Then the input that cannot be staged in is named
    with pytest.raises(InvalidInput, match=re.escape(says)):
        check_split(spec)


def test_the_same_local_name_in_different_jobs_is_fine() -> None:
    TaskSpec.model_validate(task_data(stage_in=True, inputs=["gs://a/x.txt", "gs://b/x.txt"]))


def test_inputs_are_not_checked_as_urls_without_stage_in() -> None:
    TaskSpec.model_validate(task_data(inputs=["/plain/path", "whatever"]))


def output(name: str = "out.txt", **overrides: Any) -> dict[str, Any]:
    return {"name": name, "uri": f"file:///blobs/{name}", "size": 3, "sha256": SHA, **overrides}


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"name": "/abs"}, ("name",)),
        ({"name": "a/../b"}, ("name",)),
        ({"name": "a//b"}, ("name",)),
        ({"name": "bad\nname"}, ("name",)),
        ({"name": "x" * 513}, ("name",)),
        ({"size": -1}, ("size",)),
        ({"sha256": "ABC"}, ("sha256",)),
        ({"uri": ""}, ("uri",)),
    ],
)
def test_output_file_errors_name_the_field(overrides: dict[str, Any], loc: tuple[str, ...]) -> None:
    (error,) = rejected(OutputFile, output(**overrides))
    assert error["loc"] == loc


def test_a_finished_report_carries_its_outputs() -> None:
    r = JobReport.model_validate(report(status="finished", outputs=[output("a"), output("d/b")]))
    assert [o.name for o in r.outputs] == ["a", "d/b"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"status": "failed", "outputs": [output()]}, "only a finished report"),
        ({"status": "finished", "outputs": [output(), output()]}, "same name"),
    ],
)
def test_outputs_come_once_each_and_only_with_success(overrides: dict[str, Any], says: str) -> None:
    (error,) = rejected(JobReport, report(**overrides))
    assert says in error["msg"]


def staged_task(command: list[str], **fields: Any) -> Task:
    spec = TaskSpec.model_validate(task_data(command=command, **fields))
    return Task(id="t1", spec=spec, created_at=1.0, updated_at=1.0)


def test_a_staged_jobs_placeholders_hold_the_local_names_and_inputs_the_urls() -> None:
    # Given a task that stages two inputs per job in, and uploads its text files
    urls = ["gs://bk/run/a.root", "https://h/x/b.root?sig=1"]
    task = staged_task(
        ["reco", "--in={input}", "{inputs}", "{index}"],
        inputs=urls,
        files_per_job=2,
        stage_in=True,
        outputs=["*.txt"],
    )

    # When its job is made
    (spec,) = split(task.spec)
    job = new_job(task, spec, now=1.0)

    # Then the payload is given the local names, the pilot the URLs and the patterns
    assert job.command == ["reco", "--in=a.root,b.root", "a.root", "b.root", "0"]
    assert job.inputs == urls
    assert (job.stage_in, job.output_patterns) == (True, ["*.txt"])


def test_an_unstaged_jobs_placeholders_hold_the_inputs_as_given() -> None:
    task = staged_task(["cat", "{input}"], inputs=["gs://bk/a.txt"])
    (spec,) = split(task.spec)
    assert new_job(task, spec, now=1.0).command == ["cat", "gs://bk/a.txt"]


def test_a_finished_report_records_the_outputs_on_the_job() -> None:
    # Given a job running on pilot p1
    task = staged_task(["true"], inputs=["file:///a.txt"], stage_in=True, outputs=["*"])
    (spec,) = split(task.spec)
    job = new_job(task, spec, now=1.0).model_copy(
        update={"status": JobStatus.RUNNING, "pilot_id": "p1"}
    )
    files = [OutputFile.model_validate(output("a.out"))]

    # When the pilot reports it finished, with its outputs
    done = JobReport(job_id=job.id, attempt=1, status="finished", exit_code=0, outputs=files)
    change = apply_report(job, done, "p1", 2.0, "file:///log")

    # Then the job keeps them, and shows them in its JSON form
    assert change.after.outputs == files
    assert jsonable(change.after)["outputs"] == [output("a.out")]
