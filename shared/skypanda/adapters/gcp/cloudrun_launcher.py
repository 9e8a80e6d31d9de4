"""Cloud Run pilots: each pilot is one execution (one task) of a Cloud Run job.

A queue has one Cloud Run job, `projects/{project}/locations/{region}/jobs/{job}`, created on first
launch if it is missing. Its task template runs `python3 -m skypanda pilot` (the image must hold
Python 3.11+ and the skypanda package; the command is set explicitly so that any image with
skypanda installed works, whatever its entrypoint) with:

    SKYPANDA_SERVER   the API base URL
    SKYPANDA_QUEUE    the queue's name
    args              --memory-mb M --cores C: what the pilot offers (the container's limits)

Each launch runs the job once (task_count 1) with per-execution overrides: SKYPANDA_PILOT_ID,
SKYPANDA_TOKEN and, in push mode, SKYPANDA_PUSH_JOB. Cloud Run's execution overrides cannot
change resources (only args, env, task count and timeout), so a push-mode job whose size differs
from the queue's pilots runs on a sized sibling job, `{job}-{cores}c-{memory}m`, created the same
way.

SKYPANDA_TOKEN is the pilot's own launch credential (`credential_for(pilot_id)`, given by the
runtime; adapters.pilot_credentials), never the deployment's token: it may only register that
one pilot id, once, and it expires (an hour by default: enough for an execution queued for
capacity). A payload that reads it from the pilot's environment gains nothing: the pilot spent
it registering before it ran any payload, and from then on acts with a credential of its own,
kept in memory. Whoever may read the execution (its overrides; `run.executions.get`) sees it
too, and could register as that pilot only if it did so before the pilot itself. A job made by
an earlier skypanda still takes SKYPANDA_TOKEN from a Secret: the override replaces that
variable (overrides merge by name), but delete such jobs (they are made again on the next
launch) and the pilots' access to the Secret.

Executions cannot be labelled through overrides either: the launcher remembers which execution
it started for which pilot, so `list` reports only the pilots this instance launched (a restarted
scaler does not see its predecessor's executions).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.protobuf import duration_pb2

from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import CloudRunLauncherSpec
from skypanda.domain.models import Job, Queue, Resources
from skypanda.ports import LaunchedPilot

log = logging.getLogger(__name__)

CONTAINER = "pilot"
PILOT_COMMAND = ["python3", "-m", "skypanda", "pilot"]
PUSH_TIMEOUT_MARGIN_S = 600
"""A push-mode execution may run this long past its job's walltime (staging, reporting)."""
MAX_TIMEOUT_S = 86_400
CREATE_TIMEOUT_S = 120.0
MAX_JOB_ID = 63

# Cloud Run's allowed CPU limits, and the least CPU each memory size needs (MiB -> CPUs).
_CPUS = (1, 2, 4, 6, 8)
_MIN_CPU_FOR_MEMORY = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
_MIN_MEMORY_MB = 512
_API_ERRORS = (gexc.GoogleAPICallError, OSError)
"""What a failed call raises: an API error, or the transport's (requests' errors are OSErrors)."""
_MAX_MEMORY_MB = 32 * 1024


def container_limits(size: Resources) -> dict[str, str]:
    """Cloud Run resource limits holding `size`: CPU rounded up to an allowed value and to what
    the memory needs, memory at least Cloud Run's minimum.

    Raises:
        InvalidInput: the size exceeds what a Cloud Run task can have (8 CPUs, 32 GiB).
    """
    if size.memory_mb > _MAX_MEMORY_MB or size.cores > _CPUS[-1]:
        raise InvalidInput(
            f"{size.cores} cores / {size.memory_mb} MB exceeds a Cloud Run task "
            f"({_CPUS[-1]} CPUs, {_MAX_MEMORY_MB} MB)",
            cores=size.cores,
            memory_mb=size.memory_mb,
        )
    need = size.cores
    for memory_mb, cpus in _MIN_CPU_FOR_MEMORY:
        if size.memory_mb > memory_mb:
            need = max(need, cpus)
            break
    cpu = next(c for c in _CPUS if c >= need)
    return {"cpu": str(cpu), "memory": f"{max(size.memory_mb, _MIN_MEMORY_MB)}Mi"}


def job_template(
    spec: CloudRunLauncherSpec, queue: Queue, server_url: str, size: Resources
) -> run_v2.Job:
    """The Cloud Run job whose executions are pilots of `queue` offering `size`."""
    env = [
        run_v2.EnvVar(name="SKYPANDA_SERVER", value=server_url),
        run_v2.EnvVar(name="SKYPANDA_QUEUE", value=queue.name),
    ]  # no credential: each execution gets its own (run_request)
    container = run_v2.Container(
        name=CONTAINER,
        image=spec.image,
        command=PILOT_COMMAND,
        args=["--memory-mb", str(size.memory_mb), "--cores", str(size.cores)],
        env=env,
        resources=run_v2.ResourceRequirements(limits=container_limits(size)),
    )
    task = run_v2.TaskTemplate(
        containers=[container],
        timeout=duration_pb2.Duration(seconds=spec.timeout_s),
        max_retries=spec.max_retries,
        service_account=spec.service_account or "",
    )
    return run_v2.Job(
        labels={"skypanda-queue": queue.name},
        template=run_v2.ExecutionTemplate(task_count=1, template=task),
    )


def run_request(
    job_name: str, spec: CloudRunLauncherSpec, pilot_id: str, job: Job | None, credential: str
) -> run_v2.RunJobRequest:
    """One execution of `job_name` for pilot `pilot_id` (push mode: for `job` alone), with the
    pilot's launch `credential`."""
    env = [
        run_v2.EnvVar(name="SKYPANDA_PILOT_ID", value=pilot_id),
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


def execution_state(execution: run_v2.Execution) -> tuple[bool, int | None]:
    """(alive, exit code): alive until Cloud Run sets completion_time; then 0 if the task
    succeeded, 1 if it failed or was cancelled."""
    if "completion_time" not in execution:
        return True, None
    return False, 0 if execution.succeeded_count > 0 else 1


class CloudRunLauncher:
    """Launcher port on Cloud Run jobs (see the module docstring for what runs where).

    `credential_for(pilot_id)` makes each pilot's launch credential. The clients use the REST
    transport; `client_options` and `credentials` (Google's, for the Cloud Run API) reach both
    clients (tests point them at a local server with anonymous credentials).
    """

    def __init__(
        self,
        *,
        server_url: str,
        credential_for: Callable[[str], str],
        client_options: dict[str, Any] | None = None,
        credentials: Any = None,
    ) -> None:
        self.server_url = server_url
        self._credential_for = credential_for
        kwargs: dict[str, Any] = {"transport": "rest", "client_options": client_options}
        if credentials is not None:
            kwargs["credentials"] = credentials
        self._jobs = run_v2.JobsClient(**kwargs)
        self._executions = run_v2.ExecutionsClient(**kwargs)
        self._ready: set[str] = set()  # job names known to exist
        self._pilots: dict[str, str] = {}  # pilot id -> execution name
        self._lock = threading.Lock()

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        """Run one execution of the queue's job; return its name without waiting for it.

        Raises:
            InvalidInput: the queue is not a Cloud Run queue, or the job is too big for one.
            BackendUnavailable: the Cloud Run API failed.
        """
        spec = queue.launcher
        if not isinstance(spec, CloudRunLauncherSpec):
            raise InvalidInput(f"queue {queue.name} does not launch on Cloud Run", queue=queue.name)
        size = job.resources if job is not None else queue.pilot_resources
        job_id = spec.job
        if (size.memory_mb, size.cores) != (
            queue.pilot_resources.memory_mb,
            queue.pilot_resources.cores,
        ):
            suffix = f"-{size.cores}c-{size.memory_mb}m"
            job_id = spec.job[: MAX_JOB_ID - len(suffix)].rstrip("-") + suffix
        parent = f"projects/{spec.project}/locations/{spec.region}"
        job_name = f"{parent}/jobs/{job_id}"
        try:
            self._ensure_job(parent, job_id, job_template(spec, queue, self.server_url, size))
            run = run_request(job_name, spec, pilot_id, job, self._credential_for(pilot_id))
            op = self._jobs.run_job(request=run)
        except _API_ERRORS as e:
            raise BackendUnavailable(
                f"Cloud Run: cannot run {job_name}: {e}", job=job_name, pilot=pilot_id
            ) from e
        # The operation's metadata is the Execution, there as soon as Cloud Run accepted the run;
        # its result would only come when the pilot ends.
        execution = op.metadata
        if execution is None or not execution.name:
            raise BackendUnavailable(
                f"Cloud Run: run of {job_name} returned no execution", job=job_name, pilot=pilot_id
            )
        with self._lock:
            self._pilots[pilot_id] = execution.name
        log.info("launched pilot %s on queue %s as %s", pilot_id, queue.name, execution.name)
        return str(execution.name)

    def _ensure_job(self, parent: str, job_id: str, template: run_v2.Job) -> None:
        """Create the Cloud Run job unless it exists (an existing job is used as it is)."""
        name = f"{parent}/jobs/{job_id}"
        with self._lock:
            if name in self._ready:
                return
        try:
            self._jobs.get_job(name=name)
        except gexc.NotFound:
            try:
                op = self._jobs.create_job(parent=parent, job=template, job_id=job_id)
                op.result(timeout=CREATE_TIMEOUT_S)  # type: ignore[no-untyped-call]
                log.info("created Cloud Run job %s", name)
            except gexc.AlreadyExists:
                pass  # another scaler created it first
        with self._lock:
            self._ready.add(name)

    def list(self) -> list[LaunchedPilot]:
        """Pilots this launcher started, from the executions of the jobs it used.

        Raises:
            BackendUnavailable: the Cloud Run API failed.
        """
        with self._lock:
            jobs = sorted(self._ready)
            by_execution = {ex: pid for pid, ex in self._pilots.items()}
        out = []
        for job_name in jobs:
            for execution in self._executions_of(job_name):
                pilot_id = by_execution.get(execution.name)
                if pilot_id is None:
                    continue
                alive, code = execution_state(execution)
                out.append(LaunchedPilot(pilot_id, execution.name, alive, code))
        return out

    def _executions_of(self, job_name: str) -> Iterable[run_v2.Execution]:
        try:
            return list(self._executions.list_executions(parent=job_name))
        except _API_ERRORS as e:
            raise BackendUnavailable(
                f"Cloud Run: cannot list executions of {job_name}: {e}", job=job_name
            ) from e

    def stop(self, pilot_id: str) -> None:
        """Cancel the pilot's execution (Cloud Run sends its task SIGTERM, then SIGKILL).

        An unknown pilot or an execution already finished is left alone.

        Raises:
            BackendUnavailable: the Cloud Run API failed.
        """
        with self._lock:
            name = self._pilots.get(pilot_id)
        if name is None:
            return
        try:
            self._executions.cancel_execution(name=name)
        except (gexc.NotFound, gexc.FailedPrecondition) as e:
            log.info("pilot %s: execution %s not cancelled: %s", pilot_id, name, e)
        except _API_ERRORS as e:
            raise BackendUnavailable(
                f"Cloud Run: cannot cancel {name}: {e}", execution=name, pilot=pilot_id
            ) from e
