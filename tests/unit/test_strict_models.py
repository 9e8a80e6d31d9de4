"""Strict input models (issue 13): finite numbers only, no string or bool coercion for numbers,
bounds on every number a user or a queue file sets, environments checked at submission, and
nothing accepted that cannot be stored and read back.

Each finding of the issue is a test here; every refusal names its field.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from skypanda.domain.errors import InvalidInput
from skypanda.domain.fleet import MAX_LOCAL_PILOTS, MAX_PILOTS
from skypanda.domain.models import JobReport, OutputFile, Queue, Resources, TaskSpec
from skypanda.domain.values import (
    EXIT_CODE_MAX,
    EXIT_CODE_MIN,
    MAX_DURATION_S,
    MIN_DURATION_S,
)
from skypanda.domain.workflow import WorkflowSpec
from skypanda.formats.queuefile import parse_queues
from skypanda.formats.taskfile import parse_task, parse_workflow

TASK: dict[str, Any] = {"name": "t", "command": ["run", "{index}"], "n_jobs": 2}
CLOUDRUN = {"kind": "cloudrun", "project": "my-project", "region": "europe-west1",
            "job": "pilots", "image": "img"}  # fmt: skip
INF, NAN = float("inf"), float("nan")


def errors_of(model: type[BaseModel], data: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of `data` as `model` (it must be refused)."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value.errors()


def refused_at(model: type[BaseModel], data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    """Where (the field's location) and why `data` is refused: exactly one error."""
    (error,) = errors_of(model, data)
    return tuple(error["loc"]), error["msg"]


def round_trips(model: BaseModel) -> None:
    """As both stores keep a spec: JSON text, read back equal."""
    text = model.model_dump_json(by_alias=True)
    assert type(model).model_validate_json(text) == model


# --- poison floats: never accepted, so never stored as null -------------------------------------


@pytest.mark.parametrize("poison", [INF, -INF, NAN])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("heartbeat_timeout_s", None),
        ("heartbeat_interval_s", None),
        ("idle_timeout_s", None),
        ("looping_timeout_s", None),
        ("max_walltime_s", None),
        ("disk_gb", None),
        ("shares", "alice"),
    ],
)
def test_a_non_finite_number_in_a_queue_is_refused(
    field: str, value: str | None, poison: float
) -> None:
    # Given a queue with an infinite or NaN number in one field (as JSON's 1e999 gives it)
    data = {"name": "q", field: {value: poison} if value else poison}

    # Then it is refused, naming the field, instead of being stored as null for ever
    loc, msg = refused_at(Queue, data)
    assert loc[0] == field
    assert "finite" in msg or "greater" in msg or "less" in msg


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "q", "heartbeat_timeout_s": 1e999}',
        '{"name": "q", "shares": {"alice": Infinity}}',
        '{"name": "q", "disk_gb": NaN}',
    ],
)
def test_a_stored_or_posted_json_queue_with_a_non_finite_number_is_refused(text: str) -> None:
    # As the API reads a body (Python's json module accepts Infinity, NaN and 1e999)...
    with pytest.raises(ValidationError):
        Queue.model_validate(json.loads(text))
    # ...and as a store reads one back
    with pytest.raises(ValidationError):
        Queue.model_validate_json(text)


@pytest.mark.parametrize(
    "line",
    [
        "heartbeat_timeout_s: .inf",
        "heartbeat_interval_s: -.inf",
        "looping_timeout_s: .nan",
        "max_walltime_s: 1.0e+999",
        "shares: {alice: .inf}",
        "disk_gb: .inf",
        "pilot_resources: {walltime: .inf}",
    ],
)
def test_a_queue_file_with_a_non_finite_number_is_refused_naming_queue_field_and_line(
    line: str,
) -> None:
    # Given a queue file whose second line holds YAML's infinity or NaN
    text = f"- name: q\n  {line}\n"

    # Then the whole file is refused, naming the queue, the field and the line
    with pytest.raises(InvalidInput) as info:
        parse_queues(text, "queues.yaml")
    field = line.split(":")[0]
    assert f"queues.yaml: line 2: queue 'q': {field}" in info.value.message


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"resources": {"walltime": INF}}, ("resources", "walltime")),
        ({"resources": {"walltime": NAN}}, ("resources", "walltime")),
        ({"resources": {"walltime": "9" * 400}}, ("resources", "walltime")),  # float() -> inf
        (
            {"n_jobs": None, "inputs": ["a"], "size_per_job_mb": 10, "input_sizes_mb": [INF]},
            ("input_sizes_mb", 0),
        ),
        (
            {"n_jobs": None, "inputs": ["a"], "size_per_job_mb": NAN, "input_sizes_mb": [1]},
            ("size_per_job_mb",),
        ),
        ({"retry_rules": [{"codes": [1], "action": "retry", "factor": INF}]},
         ("retry_rules", 0, "factor")),
    ],
)  # fmt: skip
def test_a_non_finite_number_in_a_task_is_refused(
    overrides: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    data = {k: v for k, v in {**TASK, **overrides}.items() if v is not None}
    assert refused_at(TaskSpec, data)[0] == loc


def test_a_task_file_with_yaml_infinity_is_refused_naming_field_and_line() -> None:
    text = "name: t\ncommand: [run]\nn_jobs: 1\nresources:\n  walltime: .inf\n"
    with pytest.raises(InvalidInput) as info:
        parse_task(text, "task.yaml")
    assert "task.yaml: line 5: resources.walltime: Input should be a finite number" in str(
        info.value.message
    )


def test_a_task_posted_as_json_with_1e999_is_refused() -> None:
    body = '{"name": "t", "command": ["run"], "inputs": ["a", "b"], "size_per_job_mb": 5,' \
        ' "input_sizes_mb": [1, 1e999]}'  # fmt: skip
    loc, msg = refused_at(TaskSpec, json.loads(body))
    assert (loc, msg) == (("input_sizes_mb", 1), "Input should be a finite number")


# --- no coercion of strings and bools into numbers ----------------------------------------------


@pytest.mark.parametrize("value", ["10", True, 10.0, "1e3", b"10"])
@pytest.mark.parametrize("field", ["n_jobs", "max_attempts", "priority"])
def test_a_task_number_must_be_a_number(field: str, value: Any) -> None:
    loc, msg = refused_at(TaskSpec, {**TASK, field: value})
    assert loc == (field,)
    assert "integer" in msg


@pytest.mark.parametrize(("text", "says"), [
    ('n_jobs: "10"', "line 3: n_jobs: Input should be a valid integer"),
    ("n_jobs: true", "line 3: n_jobs: Input should be a valid integer"),
    ("n_jobs: 10.0", "line 3: n_jobs: Input should be a valid integer"),
])  # fmt: skip
def test_a_task_file_with_a_quoted_or_boolean_count_is_refused(text: str, says: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_task(f"name: t\ncommand: [run]\n{text}\n", "task.yaml")
    assert f"task.yaml: {says}" in info.value.message


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"resources": {"memory_mb": "4000"}}, ("resources", "memory_mb")),
        ({"resources": {"cores": True}}, ("resources", "cores")),
        ({"resources": {"walltime": True}}, ("resources", "walltime")),
        ({"allow_partial": "yes"}, ("allow_partial",)),
        ({"allow_partial": 1}, ("allow_partial",)),
        ({"stage_in": "true"}, ("stage_in",)),
        ({"queues": {"gpus": "1"}}, ("queues", "gpus")),
        ({"retry_rules": [{"codes": ["1212"], "action": "retry"}]}, ("retry_rules", 0, "codes", 0)),
        ({"retry_rules": [{"exit_codes": [True], "action": "retry"}]},
         ("retry_rules", 0, "exit_codes", 0)),
    ],
)  # fmt: skip
def test_no_string_or_bool_coercion_anywhere_in_a_task(
    data: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    assert refused_at(TaskSpec, {**TASK, **data})[0] == loc


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_pilots", "1"),
        ("max_pilots", True),
        ("jobs_per_acquire", 8.0),
        ("gpus", "1"),
        ("disk_gb", "10"),
        ("shares", {"alice": "2"}),
        ("shares", {"alice": True}),
    ],
)
def test_no_string_or_bool_coercion_in_a_queue(field: str, value: Any) -> None:
    assert refused_at(Queue, {"name": "q", field: value})[0][0] == field


def test_what_json_and_yaml_give_is_still_accepted() -> None:
    # An int where a float is wanted, durations as text, enums as their strings
    queue = Queue.model_validate(
        {"name": "q", "status": "test", "heartbeat_interval_s": 2, "heartbeat_timeout_s": "1m",
         "shares": {"alice": 2}, "disk_gb": 10, "launcher": {"kind": "local"}}
    )  # fmt: skip
    assert (queue.heartbeat_timeout_s, queue.shares, queue.disk_gb) == (60.0, {"alice": 2.0}, 10)
    round_trips(queue)
    spec = TaskSpec.model_validate(
        {**TASK, "resources": {"walltime": "2h", "memory_mb": 100}, "allow_partial": True}
    )
    assert spec.resources.walltime_s == 7200.0
    round_trips(spec)
    report = JobReport.model_validate(
        {"job_id": "j1", "attempt": 1, "status": "failed", "exit_code": -9, "error_code": 1212}
    )
    assert report.exit_code == -9


# --- bounds --------------------------------------------------------------------------------------


def test_a_local_queue_cannot_fork_thousands_of_pilots() -> None:
    # Given a local queue asking for 10,000 pilots kept running (each a process on this machine)
    data = {"name": "q", "min_pilots": 10_000, "max_pilots": 10_000}

    # Then it is refused, naming max_pilots and the bound
    (error,) = errors_of(Queue, data)
    assert f"max_pilots (10000) is more than {MAX_LOCAL_PILOTS}" in error["msg"]
    # while the same numbers on Cloud Run are a large but sane campaign
    assert Queue.model_validate({**data, "launcher": CLOUDRUN}).min_pilots == 10_000
    # and neither launcher goes past MAX_PILOTS
    loc, _ = refused_at(Queue, {"name": "q", "min_pilots": MAX_PILOTS + 1, "launcher": CLOUDRUN})
    assert loc == ("min_pilots",)


def test_a_queue_file_with_min_pilots_10000_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"line 1: queue 'q': \(queue\): .*max_pilots"):
        parse_queues("- name: q\n  min_pilots: 10000\n  max_pilots: 10000\n", "queues.yaml")


@pytest.mark.parametrize(
    "field", ["heartbeat_interval_s", "idle_timeout_s", "looping_timeout_s", "max_walltime_s"]
)
@pytest.mark.parametrize("value", [1e-9, "0", 0.05, MAX_DURATION_S + 1, "31d"])
def test_queue_intervals_are_bounded(field: str, value: Any) -> None:
    loc, msg = refused_at(Queue, {"name": "q", field: value})
    assert loc == (field,)
    assert str(MIN_DURATION_S) in msg or str(MAX_DURATION_S) in msg


def test_the_shortest_and_longest_intervals_are_accepted() -> None:
    queue = Queue(
        name="q", heartbeat_interval_s=MIN_DURATION_S, heartbeat_timeout_s="30d",
        idle_timeout_s=MIN_DURATION_S, looping_timeout_s=MAX_DURATION_S,
    )  # fmt: skip
    round_trips(queue)


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"resources": {"walltime": 1e-9}}, ("resources", "walltime")),
        ({"resources": {"walltime": "31d"}}, ("resources",)),
        ({"resources": {"memory_mb": 4_000_001}}, ("resources", "memory_mb")),
        ({"resources": {"cores": 1025}}, ("resources", "cores")),
        ({"priority": 1_000_001}, ("priority",)),
        ({"priority": -(2**70)}, ("priority",)),
        ({"max_attempts": 2**70}, ("max_attempts",)),
        ({"n_jobs": 2**70}, ("n_jobs",)),
        ({"command": ["x" * (128 * 1024 + 1)]}, ("command", 0)),
        ({"retry_rules": [{"exit_codes": [2**70], "action": "retry"}]},
         ("retry_rules", 0, "exit_codes", 0)),
        ({"retry_rules": [{"codes": [-1], "action": "retry"}]}, ("retry_rules", 0, "codes", 0)),
    ],
)  # fmt: skip
def test_task_numbers_and_lengths_are_bounded(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert refused_at(TaskSpec, {**TASK, **data})[0] == loc


def test_a_task_walltime_over_30_days_is_refused_with_the_limit() -> None:
    (error,) = errors_of(TaskSpec, {**TASK, "resources": {"walltime": "31d"}})
    assert "walltime 2.6784e+06 s is more than 2592000 s (30 days)" in error["msg"]


def test_a_jobs_walltime_raised_past_30_days_by_retries_stays_readable() -> None:
    # A job's resources as a store reads them back, after retry rules raised its walltime
    raised = Resources(walltime=MAX_DURATION_S * 10.0)
    assert Resources.model_validate_json(raised.model_dump_json()) == raised


# --- environments and command words, checked at submission --------------------------------------


@pytest.mark.parametrize("name", ["A=B", "A\0B", "", "1ABC", "A B", "A-B", "Ä", "A\n", "x" * 257])
def test_an_environment_variable_name_that_no_process_can_have_is_refused(name: str) -> None:
    loc, msg = refused_at(TaskSpec, {**TASK, "env": {name: "v"}})
    assert loc == ("env", name, "[key]")
    assert "environment variable name" in msg


@pytest.mark.parametrize("value", ["a\0b", "\0", "\ud800"])
def test_an_environment_value_with_a_nul_or_a_lone_surrogate_is_refused(value: str) -> None:
    loc, msg = refused_at(TaskSpec, {**TASK, "env": {"A": value}})
    assert loc == ("env", "A")
    assert "NUL" in msg or "unicode" in msg


def test_ordinary_environments_are_accepted() -> None:
    env = {"PATH": "/usr/bin:/bin", "_X1": "", "lower_case": "a=b c", "OPTS": "--x='1 2'"}
    assert TaskSpec.model_validate({**TASK, "env": env}).env == env


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"command": ["run", "a\0b"]}, ("command", 1)),
        ({"command": ["run\ud800"]}, ("command", 0)),
        ({"n_jobs": None, "inputs": ["ok", "x\0y"]}, ("inputs", 1)),
        ({"n_jobs": None, "jobs": [["a"], ["b\0"]]}, ("jobs", 1, 0)),
        ({"outputs": ["out\ud800.txt"]}, ("outputs",)),
    ],
)
def test_words_a_process_cannot_get_are_refused(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    data = {k: v for k, v in {**TASK, **data}.items() if v is not None}
    assert refused_at(TaskSpec, data)[0] == loc


# --- pilot reports ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exit_code", 2**70),
        ("exit_code", -(2**70)),
        ("exit_code", EXIT_CODE_MAX + 1),
        ("exit_code", EXIT_CODE_MIN - 1),
        ("exit_code", "0"),
        ("error_code", 2**70),
        ("error_code", -1),
        ("attempt", 2**70),
        ("attempt", True),
        ("error_diag", "bad \ud800"),
    ],
)
def test_a_report_with_an_out_of_range_number_is_a_validation_error(field: str, value: Any) -> None:
    # Given a pilot's report whose number would overflow a 64-bit integer column (or is no
    # exit code), When it is validated, Then it is refused naming the field (a 422, not a 500)
    data = {"job_id": "j1", "attempt": 1, "status": "failed", field: value}
    assert refused_at(JobReport, data)[0] == (field,)


@pytest.mark.parametrize("code", [0, 1, 255, -9, -64, 3221225477])  # 0xC0000005 on Windows
def test_exit_codes_of_every_platform_are_accepted(code: int) -> None:
    data = {"job_id": "j1", "attempt": 1, "status": "failed", "exit_code": code}
    assert JobReport.model_validate(data).exit_code == code


@pytest.mark.parametrize(
    "launcher",
    [
        {"kind": "gke", "image": "i", "node_selector": {"pool": "\ud800"}},
        {"kind": "gke", "image": "i", "node_selector": {"\udc00": "x"}},
        {"kind": "gke", "image": "i", "tolerations": [{"key": "\ud800"}]},
        {**CLOUDRUN, "service_account": "\ud800@x"},
    ],
)
def test_a_launcher_text_that_cannot_be_stored_is_refused(launcher: dict[str, Any]) -> None:
    # Found by the round-trip property: such a queue was accepted, then failed to be stored
    loc, msg = refused_at(Queue, {"name": "q", "launcher": launcher})
    assert loc[0] == "launcher"  # at the field itself where the launcher's model is strict
    assert "surrogate" in msg or "unicode" in msg


def test_an_output_size_is_bounded() -> None:
    data = {"name": "a", "uri": "file:///a", "size": 2**70, "sha256": "0" * 64}
    assert refused_at(OutputFile, data)[0] == ("size",)


# --- workflows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"continue_on_failure": "yes"}, ("continue_on_failure",)),
        ({"loops": [{"name": "l", "tasks": ["a"], "max_iterations": "3",
                     "until": {"task": "a", "flag": "done"}}]}, ("loops", 0, "max_iterations")),
    ],
)  # fmt: skip
def test_workflow_numbers_and_flags_are_strict(
    change: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    data = {"name": "w", "tasks": [TASK | {"name": "a"}], **change}
    assert refused_at(WorkflowSpec, data)[0] == loc


def test_a_workflow_task_with_yaml_infinity_is_refused_naming_the_task() -> None:
    text = "name: w\ntasks:\n  - name: a\n    command: [run]\n    n_jobs: 1\n" \
        "    resources: {walltime: .inf}\n"  # fmt: skip
    with pytest.raises(InvalidInput, match=r"line 6: tasks\.0\.resources\.walltime: .*finite"):
        parse_workflow(text, "wf.yaml")


def test_finite_extremes_round_trip() -> None:
    # The largest and smallest values accepted are stored and read back exactly
    spec = TaskSpec.model_validate(
        {"name": "t", "command": ["run"], "inputs": ["a", "b"], "size_per_job_mb": 1e9,
         "input_sizes_mb": [5e-324, 1e9], "priority": -1_000_000,
         "resources": {"walltime": MAX_DURATION_S, "memory_mb": 4_000_000, "cores": 1024}}
    )  # fmt: skip
    round_trips(spec)
    assert math.isfinite(spec.input_sizes_mb[0] if spec.input_sizes_mb else 0)
