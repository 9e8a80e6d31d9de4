"""What the Cloud Run launcher asks Cloud Run for, and how it reads Cloud Run's answers back:
the queue's job (its task template, labels and limits), one run's overrides, the drift between a
job and the one wanted, an execution's state and pilot. Pure: no client, no clock.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from google.cloud import run_v2
from google.protobuf import duration_pb2, json_format

from skypanda.adapters.gcp.cloudrun_limits import container_limits
from skypanda.domain.launchers import CloudRunLauncherSpec
from skypanda.domain.models import Job, Queue, Resources

CONTAINER = "pilot"
PILOT_COMMAND = ["python3", "-m", "skypanda", "pilot"]
LABEL_QUEUE = "skypanda-queue"
LABEL_SIZE = "skypanda-size"
LABEL_MAIN = "skypanda-main"
ENV_PILOT = "SKYPANDA_PILOT_ID"
ENV_SERVER = "SKYPANDA_SERVER"
PUSH_TIMEOUT_MARGIN_S = 600
"""A push-mode execution may run this long past its job's walltime (staging, reporting)."""
MAX_TIMEOUT_S = 86_400
MAX_JOB_ID = 63
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def label_value(text: str) -> str:
    """`text` as a Google Cloud label value (at most 63 lowercase letters, digits, `_`, `-`):
    itself when it is one, else a cleaned, shortened form and a hash of the exact text."""
    if _LABEL_VALUE.match(text):
        return text
    base = re.sub(r"[^a-z0-9_-]+", "-", text.lower())[:54].strip("-_")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{base}-{digest}" if base else digest


def size_key(size: Resources) -> str:
    return f"{size.cores}c-{size.memory_mb}m"


def side_job_id(job: str, size: Resources) -> str:
    """The sized side job of queue job `job`: `{job}-{cores}c-{memory}m`, a valid job id."""
    suffix = f"-{size_key(size)}"
    return job[: MAX_JOB_ID - len(suffix)].rstrip("-") + suffix


def job_template(
    spec: CloudRunLauncherSpec, queue: Queue, server_url: str, size: Resources, *, side: bool
) -> run_v2.Job:
    """The Cloud Run job whose executions are pilots of `queue` offering `size` (`side`: a
    push-mode side job of that size).

    Raises:
        InvalidInput: no Cloud Run task holds `size`.
    """
    env = [
        run_v2.EnvVar(name=ENV_SERVER, value=server_url),
        run_v2.EnvVar(name="SKYPANDA_QUEUE", value=queue.name),
    ]  # no credential: each execution gets its own (run_request)
    container = run_v2.Container(
        name=CONTAINER,
        image=spec.image,
        command=PILOT_COMMAND,
        args=["--memory-mb", str(size.memory_mb), "--cores", str(size.cores)],
        env=env,
        resources=run_v2.ResourceRequirements(limits=container_limits(size, queue.name)),
    )
    task = run_v2.TaskTemplate(
        containers=[container],
        timeout=duration_pb2.Duration(seconds=spec.timeout_s),
        max_retries=spec.max_retries,
        service_account=spec.service_account or "",
    )
    labels = {LABEL_QUEUE: label_value(queue.name)}
    if side:
        labels |= {LABEL_SIZE: size_key(size), LABEL_MAIN: spec.job}
    return run_v2.Job(
        labels=labels,
        template=run_v2.ExecutionTemplate(
            labels={LABEL_QUEUE: labels[LABEL_QUEUE]}, task_count=1, template=task
        ),
    )


def run_request(
    job_name: str, spec: CloudRunLauncherSpec, pilot_id: str, job: Job | None, credential: str
) -> run_v2.RunJobRequest:
    """One execution of `job_name` for pilot `pilot_id` (push mode: for `job` alone), with the
    pilot's launch `credential`."""
    env = [
        run_v2.EnvVar(name=ENV_PILOT, value=pilot_id),
        run_v2.EnvVar(name="SKYPANDA_TOKEN", value=credential),
    ]
    timeout_s = spec.timeout_s
    if job is not None:
        env.append(run_v2.EnvVar(name="SKYPANDA_PUSH_JOB", value=job.id))
        walltime = math.ceil(job.resources.walltime_s) + PUSH_TIMEOUT_MARGIN_S
        timeout_s = min(max(timeout_s, walltime), MAX_TIMEOUT_S)
    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(name=CONTAINER, env=env)
        ],
        task_count=1,
        timeout=duration_pb2.Duration(seconds=timeout_s),
    )
    return run_v2.RunJobRequest(name=job_name, overrides=overrides)


def drift(existing: run_v2.Job, wanted: run_v2.Job) -> list[str]:
    """Where `existing` differs from `wanted`, as field paths. Only what `wanted` sets counts:
    maps (labels, limits) need hold only its keys, lists must match item by item; a default
    it leaves out (no service account) is Cloud Run's to fill."""

    def walk(have: Any, want: Any, path: str) -> Iterable[str]:
        if isinstance(want, dict):
            if not isinstance(have, dict):
                yield path
                return
            for key, value in want.items():
                yield from walk(have.get(key), value, f"{path}.{key}" if path else key)
        elif isinstance(want, list):
            if not isinstance(have, list) or len(have) != len(want):
                yield path
                return
            for i, (h, w) in enumerate(zip(have, want, strict=True)):
                yield from walk(h, w, f"{path}[{i}]")
        elif have != want:
            yield path

    as_dict = json_format.MessageToDict
    return list(walk(as_dict(run_v2.Job.pb(existing)), as_dict(run_v2.Job.pb(wanted)), ""))


def execution_state(execution: run_v2.Execution) -> tuple[bool, int | None]:
    """(alive, exit code): alive until Cloud Run sets completion_time; then 0 if the task
    succeeded, 1 if it failed or was cancelled."""
    if "completion_time" not in execution:
        return True, None
    return False, 0 if execution.succeeded_count > 0 else 1


def pilot_env(containers: Sequence[run_v2.Container]) -> dict[str, str]:
    """The pilot container's environment (the only container, or the one named `pilot`)."""
    for c in containers:
        if c.name == CONTAINER or len(containers) == 1:
            return {e.name: e.value for e in c.env}
    return {}


def seconds(message: Any, field: str) -> float | None:
    """A Timestamp field as seconds since the epoch; None when unset."""
    return getattr(message, field).timestamp() if field in message else None
