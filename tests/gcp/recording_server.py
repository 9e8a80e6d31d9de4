"""A local stand-in for the Cloud Run Admin API v2 (REST, JSON) that records every request.

There is no Cloud Run emulator. This server answers the calls the Cloud Run launcher makes the
way the real API does (URLs and shapes from run_v2's REST transport and the v2 reference):

    GET    /v2/projects/P/locations/R/jobs                       ListJobsResponse (paged)
    GET    /v2/projects/P/locations/R/jobs/J                     Job, or 404 NOT_FOUND
    POST   /v2/projects/P/locations/R/jobs?jobId=J               Operation (done, response Job)
    PATCH  /v2/projects/P/locations/R/jobs/J                     Operation (done, response Job)
    DELETE /v2/projects/P/locations/R/jobs/J?etag=E              Operation (done, response Job)
    POST   /v2/projects/P/locations/R/jobs/J:run                 Operation (metadata Execution)
    GET    /v2/projects/P/locations/R/jobs/J/executions          ListExecutionsResponse (paged)
    GET    /v2/.../jobs/J/executions/E/tasks                     ListTasksResponse (paged)
    POST   /v2/projects/P/locations/R/jobs/J/executions/E:cancel Operation (metadata Execution)

Its state is held in the real `google.cloud.run_v2` types, and request bodies are parsed into
them with unknown fields refused, so a wrong field name fails here as it would there. Like Cloud
Run it refuses (400 INVALID_ARGUMENT) a CPU/memory pair outside the published table
(`limits_problem`), a label that is not a label, a job id that is not one; a cancel of an
ended execution is 400 FAILED_PRECONDITION; a delete with a stale etag is 409 ABORTED.

Tests read `requests` (the JSON that went over the wire), set `failures`, move the clock (`now`)
and play Cloud Run with `finish`. `page_size` is small so that the client's pagers turn pages.
`overrides_in_template = False` plays an API that leaves the overrides out of an execution's
template (they are then only in its task).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.cloud import run_v2
from google.protobuf import json_format

JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
LOCATION = r"projects/[^/]+/locations/[^/]+"
_JOB = re.compile(rf"^({LOCATION})/jobs/([^/:]+)$")
_JOB_ID = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")

# Cloud Run's rules as its documentation words them (the oracle for the launcher's table):
# https://cloud.google.com/run/docs/configuring/jobs/memory-limits: at least 512 MiB, at most
# 32 GiB; more than 4 GiB needs 2 CPUs, more than 8 GiB 4, more than 16 GiB 6, more than 24 GiB 8.
# https://cloud.google.com/run/docs/configuring/jobs/cpu: CPUs 1, 2, 4, 6 or 8; 4 CPUs need at
# least 2 GiB, 6 and 8 CPUs at least 4 GiB.
ALLOWED_CPUS = (1, 2, 4, 6, 8)
MIN_MEMORY_MIB, MAX_MEMORY_MIB = 512, 32 * 1024
MIN_CPUS_ABOVE_MIB = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
MIN_MIB_FOR_CPUS = {4: 2 * 1024, 6: 4 * 1024, 8: 4 * 1024}


def mebibytes(quantity: str) -> int:
    """A memory limit as Cloud Run takes it ("512Mi", "2Gi") in MiB."""
    match = re.fullmatch(r"([0-9]+)(Mi|Gi)", quantity)
    if match is None:
        raise ValueError(f"memory {quantity!r} is not a quantity")
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def limits_problem(cpu: str, memory: str) -> str | None:
    """Why Cloud Run refuses these task limits, or None when it takes them."""
    if not cpu.isdigit() or int(cpu) not in ALLOWED_CPUS:
        return f"cpu {cpu!r} is not one of {ALLOWED_CPUS}"
    cpus, mib = int(cpu), mebibytes(memory)
    if not MIN_MEMORY_MIB <= mib <= MAX_MEMORY_MIB:
        return f"memory {memory} is not within {MIN_MEMORY_MIB}Mi and {MAX_MEMORY_MIB}Mi"
    for above, least in MIN_CPUS_ABOVE_MIB:
        if mib > above and cpus < least:
            return f"memory {memory} needs at least {least} CPUs, not {cpus}"
    if mib < MIN_MIB_FOR_CPUS.get(cpus, 0):
        return f"{cpus} CPUs need at least {MIN_MIB_FOR_CPUS[cpus]}Mi, not {memory}"
    return None


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


class Refused(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.reply = (code, {"error": {"code": code, "status": status, "message": message}})


class FakeCloudRun:
    """The API's state (jobs, executions, tasks by name) and the requests it received."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.jobs: dict[str, run_v2.Job] = {}
        self.executions: dict[str, run_v2.Execution] = {}
        self.tasks: dict[str, run_v2.Task] = {}
        self.failures: dict[str, int] = {}  # path suffix -> HTTP status to answer with instead
        self.page_size = 2
        self.now = 1_750_000_000.0
        self.overrides_in_template = True
        self._ids = itertools.count(1)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeCloudRun:
        self._thread.start()
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def calls(self, method: str, suffix: str) -> list[Recorded]:
        """Recorded requests with this method whose path ends with `suffix`."""
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]

    def finish(self, execution: str, *, succeeded: bool) -> None:
        """Cloud Run ends an execution's task now."""
        with self.lock:
            e = self.executions[execution]
            e.completion_time = self._time()
            e.running_count = 0
            if succeeded:
                e.succeeded_count = 1
            else:
                e.failed_count = 1

    def _time(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=UTC)

    # -- the API --------------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        """(status, JSON body) for one request."""
        for suffix, code in self.failures.items():
            if path.endswith(suffix):
                return code, {"error": {"code": code, "status": "INTERNAL", "message": "injected"}}
        name = path.removeprefix("/v2/")
        try:
            return 200, self._route(method, name, query, body)
        except Refused as e:
            return e.reply

    def _route(self, method: str, name: str, query: dict[str, list[str]], body: Any) -> Any:
        if method == "GET" and re.fullmatch(rf"{LOCATION}/jobs", name):
            return self._page(self.jobs, name + "/", "jobs", query)
        if method == "POST" and re.fullmatch(rf"{LOCATION}/jobs", name):
            return self._create(name.removesuffix("/jobs"), query["jobId"][0], body)
        if method == "GET" and name.endswith("/executions"):
            return self._page(self.executions, name + "/", "executions", query)
        if method == "GET" and name.endswith("/tasks"):
            return self._page(self.tasks, name + "/", "tasks", query)
        if method == "POST" and name.endswith(":run"):
            return self._run(name.removesuffix(":run"), body)
        if method == "POST" and name.endswith(":cancel"):
            return self._cancel(name.removesuffix(":cancel"))
        if _JOB.match(name) and method in ("GET", "PATCH", "DELETE"):
            job = self._job(name)
            if method == "GET":
                return _json(job)
            if method == "PATCH":
                return self._update(job, body)
            return self._delete(job, query.get("etag", [""])[0])
        raise Refused(404, "NOT_FOUND", f"no route for {method} {name}")

    def _job(self, name: str) -> run_v2.Job:
        if name not in self.jobs:
            raise Refused(404, "NOT_FOUND", f"Resource '{name}' was not found")
        return self.jobs[name]

    def _page(
        self, items: dict[str, Any], prefix: str, field: str, query: dict[str, list[str]]
    ) -> dict[str, Any]:
        """One page of the items directly under `prefix` (offset page tokens)."""
        mine = [v for k, v in items.items() if k.startswith(prefix) and "/" not in k[len(prefix) :]]
        start = int(query.get("pageToken", ["0"])[0] or 0)
        page: dict[str, Any] = {field: [_json(v) for v in mine[start : start + self.page_size]]}
        if start + self.page_size < len(mine):
            page["nextPageToken"] = str(start + self.page_size)
        return page

    def _create(self, parent: str, job_id: str, body: Any) -> dict[str, Any]:
        if not _JOB_ID.match(job_id):
            raise Refused(400, "INVALID_ARGUMENT", f"job id {job_id!r} is not a valid name")
        name = f"{parent}/jobs/{job_id}"
        if name in self.jobs:
            raise Refused(409, "ALREADY_EXISTS", f"Resource '{name}' already exists")
        job = _parse(run_v2.Job, body)
        _validate(job)
        job.name = name
        job.uid = f"uid-{next(self._ids)}"
        job.generation = 1
        job.etag = f'"{job.uid}-1"'
        job.create_time = job.update_time = self._time()
        self.jobs[name] = job
        return self._operation(parent, done=True, response=job)

    def _update(self, job: run_v2.Job, body: Any) -> dict[str, Any]:
        new = _parse(run_v2.Job, body)
        _validate(new)
        for field in ("labels", "annotations", "template"):  # the whole spec is replaced
            setattr(job, field, getattr(new, field))
        job.generation += 1
        job.etag = f'"{job.uid}-{job.generation}"'
        job.update_time = self._time()
        return self._operation(job.name.split("/jobs/")[0], done=True, response=job)

    def _delete(self, job: run_v2.Job, etag: str) -> dict[str, Any]:
        if etag and etag != job.etag:
            raise Refused(409, "ABORTED", f"etag {etag} does not match {job.etag}")
        del self.jobs[job.name]  # its executions and tasks go with it, running or not
        for items in (self.executions, self.tasks):
            for key in [k for k in items if k.startswith(job.name + "/")]:
                del items[key]
        return self._operation(job.name.split("/jobs/")[0], done=True, response=job)

    def _run(self, job_name: str, body: Any) -> dict[str, Any]:
        job = self._job(job_name)
        overrides = _parse(run_v2.RunJobRequest, body).overrides
        job_id = job_name.rsplit("/", 1)[1]
        execution_id = f"{job_id}-{next(self._ids):05d}"
        name = f"{job_name}/executions/{execution_id}"
        template = run_v2.TaskTemplate(job.template.template)
        for override in overrides.container_overrides:
            [container] = [c for c in template.containers if c.name == override.name]
            env = {e.name: e for e in container.env}  # overrides merge by name
            env.update({e.name: e for e in override.env})
            container.env = list(env.values())
            if override.args or override.clear_args:
                container.args = list(override.args)
        if "timeout" in overrides:
            template.timeout = overrides.timeout
        task_count = overrides.task_count or job.template.task_count
        execution = run_v2.Execution(
            name=name,
            uid=f"uid-{next(self._ids)}",
            job=job_id,
            labels=job.template.labels,
            create_time=self._time(),
            task_count=task_count,
            running_count=task_count,
            template=template if self.overrides_in_template else job.template.template,
        )
        self.executions[name] = execution
        for index in range(task_count):
            task_name = f"{name}/tasks/{execution_id}-task{index}"
            self.tasks[task_name] = run_v2.Task(
                name=task_name,
                job=job_id,
                execution=execution_id,
                index=index,
                containers=template.containers,
                create_time=self._time(),
            )
        job.execution_count += 1
        job.latest_created_execution = run_v2.ExecutionReference(
            name=name, create_time=self._time()
        )
        parent = job_name.split("/jobs/")[0]
        return self._operation(parent, metadata=execution, metadata_type=EXECUTION_TYPE)

    def _cancel(self, name: str) -> dict[str, Any]:
        if name not in self.executions:
            raise Refused(404, "NOT_FOUND", f"Resource '{name}' was not found")
        execution = self.executions[name]
        if "completion_time" in execution:
            raise Refused(400, "FAILED_PRECONDITION", f"execution {name} has already ended")
        execution.cancelled_count = execution.running_count
        execution.running_count = 0
        execution.completion_time = self._time()
        parent = name.split("/jobs/")[0]
        return self._operation(parent, metadata=execution, metadata_type=EXECUTION_TYPE)

    def _operation(
        self,
        parent: str,
        *,
        done: bool = False,
        response: run_v2.Job | None = None,
        metadata: Any = None,
        metadata_type: str = "",
    ) -> dict[str, Any]:
        op: dict[str, Any] = {"name": f"{parent}/operations/op-{next(self._ids)}", "done": done}
        if response is not None:
            op["response"] = {"@type": JOB_TYPE, **_json(response)}
        if metadata is not None:
            op["metadata"] = {"@type": metadata_type, **_json(metadata)}
        return op

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = parse_qs(url.query)
                with fake.lock:
                    fake.requests.append(Recorded(self.command, url.path, query, body))
                    status, reply = fake.answer(self.command, url.path, query, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _parse(kind: Any, body: Any) -> Any:
    """A request body as the run_v2 type it must be; an unknown field is refused."""
    try:
        return kind.wrap(
            json_format.ParseDict(body or {}, kind.pb(kind()), ignore_unknown_fields=False)
        )
    except json_format.ParseError as e:
        raise Refused(400, "INVALID_ARGUMENT", f"invalid {kind.__name__}: {e}") from e


def _json(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(type(message).pb(message))
    return result


def _validate(job: run_v2.Job) -> None:
    """What Cloud Run checks of a job that the launcher could get wrong."""
    for labels in (job.labels, job.template.labels):
        for key, value in labels.items():
            if not (_LABEL_KEY.match(key) and _LABEL_VALUE.match(value)):
                raise Refused(400, "INVALID_ARGUMENT", f"label {key}={value!r} is not valid")
    for container in job.template.template.containers:
        limits = container.resources.limits
        problem = limits_problem(limits.get("cpu", "1"), limits.get("memory", "512Mi"))
        if problem is not None:
            raise Refused(400, "INVALID_ARGUMENT", f"container {container.name}: {problem}")
