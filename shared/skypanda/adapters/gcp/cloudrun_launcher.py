"""Cloud Run pilots: each pilot is one execution (one task) of a Cloud Run job.

Jobs. A queue has one Cloud Run job, `projects/{project}/locations/{region}/jobs/{job}`, made on
its first launch if it is missing, and updated (`update_job`) when what the queue wants differs
from what the job has (a new image, timeout, service account, size ...; only the fields the
launcher sets are compared, so Cloud Run's defaults and others' labels cause no update). The
launcher owns these jobs: an update replaces the whole job, settings made by hand included.
Its task template runs `python3 -m skypanda pilot` (the image must hold Python 3.11+ and the
skypanda package; the command is set explicitly so that any image with skypanda installed
works, whatever its entrypoint) with:

    SKYPANDA_SERVER   the API base URL
    SKYPANDA_QUEUE    the queue's name
    args              --memory-mb M --cores C: what the pilot offers
    limits            the smallest CPU/memory pair Cloud Run allows that holds M and C
                      (cloudrun_limits: e.g. 4 cores and 1000 MB run with 4 CPUs and 2 GiB)

and the labels `skypanda-queue` (the queue's name as a label value) on the job and on its
executions (through the execution template).

Executions. Each launch runs the job once (task_count 1) with per-execution overrides:
SKYPANDA_PILOT_ID, SKYPANDA_TOKEN and, in push mode, SKYPANDA_PUSH_JOB. Cloud Run's overrides
hold only container args and env, the task count and the timeout: an execution can be given
neither labels nor annotations nor resources of its own. So:

- A pilot is found again by its execution's environment: `list` reads SKYPANDA_PILOT_ID (and
  SKYPANDA_SERVER, to skip another deployment's pilots) from each execution's template, which
  holds the overrides, else from its task. `list` walks every job labelled `skypanda-queue` in
  the locations this launcher knows (the queue it was made for, and every queue it launched
  on), so a scaler that started cold (a new function instance) sees, and can stop, the pilots
  an earlier instance launched. A finished execution is reported for FINISHED_WINDOW_S after it
  ended and until the scaler `forget`s its pilot: long enough for the scaler's next tick;
  older ones the sweep's heartbeat timeout has already handled.
- A push-mode job whose size differs from the queue's pilots runs on a sized side job,
  `{job}-{cores}c-{memory}m`, labelled also `skypanda-size` and `skypanda-main` (the queue's
  job). `list` deletes a side job with no running execution once it has been idle (no
  execution started or ended, no launch here) for SIDE_JOB_IDLE_S, or FINISHED_WINDOW_S when
  the queue no longer uses it (its pilots are now that size, or it runs on another job). It
  looks at the executions again just before deleting, and deletes with the listed etag, so a
  job that changed meanwhile is kept. A launch that finds its job deleted makes it again.

SKYPANDA_TOKEN is the pilot's own launch credential (`credential_for(pilot_id)`, given by the
runtime; adapters.pilot_credentials), never the deployment's token: it may only register that
one pilot id, once, and it expires (an hour by default: enough for an execution queued for
capacity). A payload that reads it from the pilot's environment gains nothing: the pilot spent
it registering before it ran any payload, and from then on acts with a credential of its own,
kept in memory. Whoever may read the execution (its overrides; `run.executions.get`) sees it
too, and could register as that pilot only if it did so before the pilot itself. A job made by
an earlier skypanda still takes SKYPANDA_TOKEN from a Secret: the override replaces that
variable (overrides merge by name), and the job is updated to the current template (without
the Secret) on the next launch; then remove the pilots' access to the Secret.

Errors: over REST, the client raises by HTTP status (409 is `Conflict`, 400 `BadRequest`), not
by the gRPC code in the body.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import run_v2

from skypanda.adapters.gcp.cloudrun_jobs import (
    ENV_PILOT,
    ENV_SERVER,
    LABEL_MAIN,
    LABEL_QUEUE,
    LABEL_SIZE,
    drift,
    execution_state,
    job_template,
    label_value,
    pilot_env,
    run_request,
    seconds,
    side_job_id,
    size_key,
)
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import CloudRunLauncherSpec
from skypanda.domain.models import Job, Queue
from skypanda.ports import LaunchedPilot

__all__ = ["FINISHED_WINDOW_S", "SIDE_JOB_IDLE_S", "CloudRunLauncher"]

log = logging.getLogger(__name__)

OPERATION_TIMEOUT_S = 120.0
FINISHED_WINDOW_S = 3600.0
"""How long after it ended a finished execution is still reported (see the module docstring)."""
SIDE_JOB_IDLE_S = 6 * 3600.0
"""How long a side job may stay idle before it is deleted (see the module docstring)."""
_API_ERRORS = (gexc.GoogleAPICallError, OSError)
T = TypeVar("T")


def _listed(pages: Callable[[], Iterable[T]], what: str) -> list[T]:
    """Every item of a paged Cloud Run listing.

    Raises:
        BackendUnavailable: the API failed (naming `what` was listed).
    """
    try:
        return list(pages())
    except _API_ERRORS as e:
        raise BackendUnavailable(f"Cloud Run: cannot list {what}: {e}", listing=what) from e


"""What a failed call raises: an API error, or the transport's (requests' errors are OSErrors)."""

Executions = list[run_v2.Execution]
Scan = list[tuple[run_v2.Job, Executions]]
"""skypanda's jobs in the known locations, each with its executions."""


class CloudRunLauncher:
    """Launcher port on Cloud Run jobs (see the module docstring for what runs where).

    `credential_for(pilot_id)` makes each pilot's launch credential. `locations`
    (`projects/P/locations/R`) are looked at by `list` and `stop` before any launch here (a cold
    start); each launch adds its queue's. The clients use the REST transport; `client_options`
    and `credentials` (Google's, for the Cloud Run API) reach them all (tests point them at a
    local server with anonymous credentials). `clock` gives seconds since the epoch.
    """

    def __init__(
        self,
        *,
        server_url: str,
        credential_for: Callable[[str], str],
        client_options: dict[str, Any] | None = None,
        credentials: Any = None,
        locations: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server_url = server_url
        self._credential_for = credential_for
        self._clock = clock
        kwargs: dict[str, Any] = {"transport": "rest", "client_options": client_options}
        if credentials is not None:
            kwargs["credentials"] = credentials
        self._jobs = run_v2.JobsClient(**kwargs)
        self._executions = run_v2.ExecutionsClient(**kwargs)
        self._tasks = run_v2.TasksClient(**kwargs)
        self._lock = threading.Lock()
        self._locations: set[str] = set(locations)
        self._ready: dict[str, run_v2.Job] = {}  # job name -> the template it was made to match
        self._launched: dict[str, str] = {}  # execution name -> pilot id, launched here
        self._identified: dict[str, str] = {}  # execution name -> pilot id, read from listings
        self._strangers: set[str] = set()  # executions that are no pilot of this deployment
        self._forgotten: set[str] = set()  # executions of pilots the scaler is done with
        self._used: dict[str, float] = {}  # job name -> when this launcher last ran it
        self._uses: dict[tuple[str, str], tuple[str, str]] = {}
        # (location, queue label) -> (the queue's job, its pilots' size key), as last launched

    # -- launch ---------------------------------------------------------------------------------

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        """Run one execution of the queue's job (or side job); return its name without waiting
        for it.

        Raises:
            InvalidInput: the queue is not a Cloud Run queue, or the size fits no Cloud Run task.
            BackendUnavailable: the Cloud Run API failed.
        """
        spec = queue.launcher
        if not isinstance(spec, CloudRunLauncherSpec):
            raise InvalidInput(f"queue {queue.name} does not launch on Cloud Run", queue=queue.name)
        pilots = queue.pilot_resources
        size = job.resources if job is not None else pilots
        side = (size.memory_mb, size.cores) != (pilots.memory_mb, pilots.cores)
        job_id = side_job_id(spec.job, size) if side else spec.job
        wanted = job_template(spec, queue, self.server_url, size, side=side)
        parent = f"projects/{spec.project}/locations/{spec.region}"
        job_name = f"{parent}/jobs/{job_id}"
        with self._lock:
            self._locations.add(parent)
            self._uses[(parent, label_value(queue.name))] = (spec.job, size_key(pilots))
            self._used[job_name] = self._clock()
        run = run_request(job_name, spec, pilot_id, job, self._credential_for(pilot_id))
        try:
            execution = self._run(parent, job_id, wanted, run)
        except _API_ERRORS as e:
            raise BackendUnavailable(
                f"Cloud Run: cannot run {job_name}: {e}", job=job_name, pilot=pilot_id
            ) from e
        if execution is None or not execution.name:
            raise BackendUnavailable(
                f"Cloud Run: run of {job_name} returned no execution", job=job_name, pilot=pilot_id
            )
        with self._lock:
            self._launched[execution.name] = pilot_id
        log.info("launched pilot %s on queue %s as %s", pilot_id, queue.name, execution.name)
        return str(execution.name)

    def _run(
        self, parent: str, job_id: str, wanted: run_v2.Job, run: run_v2.RunJobRequest
    ) -> run_v2.Execution | None:
        """Run the job, made or updated first as needed. The operation's metadata is the
        Execution, there as soon as Cloud Run accepted the run (its result would only come
        when the pilot ends)."""
        self._ensure_job(parent, job_id, wanted)
        try:
            op = self._jobs.run_job(request=run)
        except gexc.NotFound:  # deleted since we made it (an idle side job): make it again
            with self._lock:
                self._ready.pop(run.name, None)
            self._ensure_job(parent, job_id, wanted)
            op = self._jobs.run_job(request=run)
        execution: run_v2.Execution | None = op.metadata
        return execution

    def _ensure_job(self, parent: str, job_id: str, wanted: run_v2.Job) -> None:
        """Make the Cloud Run job as `wanted` unless it exists; update it if it differs."""
        name = f"{parent}/jobs/{job_id}"
        with self._lock:
            if self._ready.get(name) == wanted:
                return
        try:
            existing = self._jobs.get_job(name=name)
        except gexc.NotFound:
            try:
                op = self._jobs.create_job(parent=parent, job=wanted, job_id=job_id)
                op.result(timeout=OPERATION_TIMEOUT_S)  # type: ignore[no-untyped-call]
                log.info("created Cloud Run job %s", name)
            except gexc.Conflict:  # 409: another scaler made it first
                log.info("Cloud Run job %s was made meanwhile", name)
        else:
            changed = drift(existing, wanted)
            if changed:
                update = run_v2.Job(wanted)
                update.name = name
                op = self._jobs.update_job(job=update)
                op.result(timeout=OPERATION_TIMEOUT_S)  # type: ignore[no-untyped-call]
                log.info("updated Cloud Run job %s: %s changed", name, ", ".join(changed[:8]))
        with self._lock:
            self._ready[name] = wanted

    # -- list, stop, forget ---------------------------------------------------------------------

    def list(self) -> list[LaunchedPilot]:
        """This deployment's pilots in Cloud Run: running ones, and those that ended within
        FINISHED_WINDOW_S and are not forgotten, whichever launcher instance started them.
        Also deletes idle side jobs (the scaler calls `list` on every tick).

        Raises:
            BackendUnavailable: the Cloud Run API failed.
        """
        now = self._clock()
        scan = self._scan()
        with self._lock:
            owners = self._identified | self._launched
            forgotten = set(self._forgotten)
        out = []
        for _job, executions in scan:
            for execution in executions:
                pilot_id = owners.get(execution.name)
                if pilot_id is None or execution.name in forgotten:
                    continue
                alive, code = execution_state(execution)
                ended = seconds(execution, "completion_time")
                if alive or (ended is not None and now - ended <= FINISHED_WINDOW_S):
                    out.append(LaunchedPilot(pilot_id, execution.name, alive, code))
        self._tidy(scan, now)
        return out

    def stop(self, pilot_id: str) -> None:
        """Cancel the pilot's execution (Cloud Run sends its task SIGTERM, then SIGKILL). A
        pilot this launcher did not start is looked for in Cloud Run's listing first.

        An unknown pilot or an execution already finished is left alone.

        Raises:
            BackendUnavailable: the Cloud Run API failed.
        """
        name = self._execution_of(pilot_id)
        if name is None:
            self._scan()  # launched by an earlier instance (a cold start) or by another
            name = self._execution_of(pilot_id)
        if name is None:
            return
        try:
            self._executions.cancel_execution(name=name)
        except (gexc.NotFound, gexc.BadRequest) as e:  # gone, or ended (400 FAILED_PRECONDITION)
            log.info("pilot %s: execution %s not cancelled: %s", pilot_id, name, e)
        except _API_ERRORS as e:
            raise BackendUnavailable(
                f"Cloud Run: cannot cancel {name}: {e}", execution=name, pilot=pilot_id
            ) from e

    def forget(self, pilot_id: str) -> None:
        """The scaler is done with this ended pilot: `list` no longer reports it."""
        with self._lock:
            for name, owner in (self._identified | self._launched).items():
                if owner == pilot_id:
                    self._forgotten.add(name)
                    self._launched.pop(name, None)

    def _execution_of(self, pilot_id: str) -> str | None:
        with self._lock:
            owners = self._identified | self._launched
        return next((name for name, owner in owners.items() if owner == pilot_id), None)

    # -- reading Cloud Run ----------------------------------------------------------------------

    def _scan(self) -> Scan:
        """skypanda's jobs in the known locations and their executions; who each execution's
        pilot is, remembered for the executions Cloud Run still lists."""
        with self._lock:
            parents = sorted(self._locations)
        scan = [
            (job, self._executions_of(job.name))
            for parent in parents
            for job in self._jobs_in(parent)
            if LABEL_QUEUE in job.labels
        ]
        listed = [execution for _job, executions in scan for execution in executions]
        with self._lock:
            known = self._identified | self._launched
            strangers = set(self._strangers)
        identified: dict[str, str] = {}
        for execution in listed:
            name = execution.name
            if name in known:
                identified[name] = known[name]
            elif name not in strangers:
                pilot_id = self._identify(execution)
                if pilot_id is not None:
                    identified[name] = pilot_id
        names = {execution.name for execution in listed}
        with self._lock:
            self._identified = identified
            self._strangers &= names
            self._forgotten &= names
        return scan

    def _identify(self, execution: run_v2.Execution) -> str | None:
        """The pilot id of an execution of this deployment, from its template's environment
        (which holds the overrides) or else its task's; None when it is no pilot of ours."""
        env = pilot_env(execution.template.containers)
        if ENV_PILOT not in env:
            tasks = self._tasks_of(execution.name)
            if not tasks:
                return None  # no task yet: look again on the next scan
            env = pilot_env(tasks[0].containers)
        pilot_id = env.get(ENV_PILOT) if env.get(ENV_SERVER) == self.server_url else None
        if not pilot_id:
            with self._lock:
                self._strangers.add(execution.name)
            return None
        return pilot_id

    def _jobs_in(self, parent: str) -> Iterable[run_v2.Job]:
        return _listed(lambda: self._jobs.list_jobs(parent=parent), f"jobs in {parent}")

    def _executions_of(self, job_name: str) -> Executions:
        return _listed(
            lambda: self._executions.list_executions(parent=job_name), f"executions of {job_name}"
        )

    def _tasks_of(self, execution_name: str) -> Sequence[run_v2.Task]:
        return _listed(
            lambda: self._tasks.list_tasks(parent=execution_name), f"tasks of {execution_name}"
        )

    # -- side jobs ------------------------------------------------------------------------------

    def _tidy(self, scan: Scan, now: float) -> None:
        """Delete the side jobs that are idle: none of their executions runs, and none started
        or ended, nor was launched here, for SIDE_JOB_IDLE_S (FINISHED_WINDOW_S when their
        queue no longer uses them)."""
        for job, executions in scan:
            if LABEL_SIZE not in job.labels or any(execution_state(e)[0] for e in executions):
                continue
            idle_s = SIDE_JOB_IDLE_S if self._in_use(job) else FINISHED_WINDOW_S
            if now - self._last_use(job, executions) >= idle_s:
                self._delete_side_job(job, now)

    def _in_use(self, job: run_v2.Job) -> bool:
        """Whether the job's queue may still launch on it: unknown here (no launch on that
        queue since this launcher started) counts as yes."""
        parent = job.name.split("/jobs/")[0]
        with self._lock:
            uses = self._uses.get((parent, job.labels[LABEL_QUEUE]))
        if uses is None:
            return True
        main, pilots = uses
        return job.labels.get(LABEL_MAIN) == main and job.labels[LABEL_SIZE] != pilots

    def _last_use(self, job: run_v2.Job, executions: Iterable[run_v2.Execution]) -> float:
        times = [seconds(job, "create_time"), seconds(job, "update_time")]
        if "latest_created_execution" in job:
            times.append(seconds(job.latest_created_execution, "create_time"))
        for e in executions:
            times += [seconds(e, "create_time"), seconds(e, "completion_time")]
        with self._lock:
            times.append(self._used.get(job.name))
        return max((t for t in times if t is not None), default=0.0)

    def _delete_side_job(self, job: run_v2.Job, listed_at: float) -> None:
        """Delete an idle side job, unless an execution started on it since it was listed or
        the job changed (the etag). Best effort: a failure is logged and tried again on the
        next tick, as tidying is no part of what `list` answers."""
        name = job.name
        try:
            if any(execution_state(e)[0] for e in self._executions_of(name)):
                return
            with self._lock:
                if self._used.get(name, 0.0) >= listed_at:  # launched here since
                    return
                self._ready.pop(name, None)
            op = self._jobs.delete_job(request=run_v2.DeleteJobRequest(name=name, etag=job.etag))
            op.result(timeout=OPERATION_TIMEOUT_S)  # type: ignore[no-untyped-call]
            log.info("deleted idle Cloud Run side job %s", name)
        except gexc.NotFound:
            pass  # another scaler deleted it
        except (gexc.Conflict, gexc.BadRequest, gexc.PreconditionFailed) as e:  # changed since
            log.info("Cloud Run side job %s kept: %s", name, e)
        except (*_API_ERRORS, BackendUnavailable) as e:
            log.warning("cannot delete Cloud Run side job %s: %s", name, e)
