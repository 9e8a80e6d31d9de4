"""A local stand-in for the Cloud Run Admin API v2 (REST, JSON) that records every request.

There is no Cloud Run emulator. This server answers the few calls the Cloud Run launcher makes
the way the real API does (URLs and shapes from run_v2's REST transport and the v2 reference):

    GET    /v2/projects/P/locations/R/jobs/J                     Job, or 404 NOT_FOUND
    POST   /v2/projects/P/locations/R/jobs?jobId=J               Operation (done, response Job)
    POST   /v2/projects/P/locations/R/jobs/J:run                 Operation (metadata Execution)
    GET    /v2/projects/P/locations/R/jobs/J/executions          {"executions": [...]}
    POST   /v2/projects/P/locations/R/jobs/J/executions/E:cancel Operation (metadata Execution)

Tests read `requests`, set `failures`, and change `executions` (e.g. set completionTime) to
play Cloud Run.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


class FakeCloudRun:
    """The API's state (jobs and executions by name) and the requests it received."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.executions: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, int] = {}  # path suffix -> HTTP status to answer with instead
        self._ids = itertools.count(1)
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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

    # -- the API --------------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        """(status, JSON body) for one request."""
        name = path.removeprefix("/v2/")
        for suffix, code in self.failures.items():
            if path.endswith(suffix):
                return code, _error(code, "INTERNAL", "injected failure")
        if method == "GET" and name.endswith("/executions"):
            job = name.removesuffix("/executions")
            mine = [e for n, e in self.executions.items() if n.startswith(job + "/executions/")]
            return 200, {"executions": mine}
        if method == "GET" and name in self.jobs:
            return 200, self.jobs[name]
        if method == "GET" and "/jobs/" in name:
            return 404, _error(404, "NOT_FOUND", f"Resource '{name}' was not found")
        if method == "POST" and name.endswith("/jobs"):
            job_name = f"{name}/{query['jobId'][0]}"
            if job_name in self.jobs:
                return 409, _error(409, "ALREADY_EXISTS", f"Resource '{job_name}' already exists")
            self.jobs[job_name] = {**body, "name": job_name}
            response = {"@type": JOB_TYPE, **self.jobs[job_name]}
            return 200, self._operation(name, done=True, response=response)
        if method == "POST" and name.endswith(":run"):
            job_name = name.removesuffix(":run")
            if job_name not in self.jobs:
                return 404, _error(404, "NOT_FOUND", f"Resource '{job_name}' was not found")
            execution = {
                "name": f"{job_name}/executions/{job_name.rsplit('/', 1)[1]}-{next(self._ids):05d}",
                "job": job_name.rsplit("/", 1)[1],
                "taskCount": 1,
            }
            self.executions[execution["name"]] = execution
            parent = job_name.split("/jobs/")[0]
            return 200, self._operation(parent, metadata={"@type": EXECUTION_TYPE, **execution})
        if method == "POST" and name.endswith(":cancel"):
            execution = self.executions[name.removesuffix(":cancel")]
            execution["cancelledCount"] = 1
            execution["completionTime"] = "2025-01-01T00:00:00Z"
            parent = name.split("/jobs/")[0]
            return 200, self._operation(parent, metadata={"@type": EXECUTION_TYPE, **execution})
        return 404, _error(404, "NOT_FOUND", f"no route for {method} {path}")

    def _operation(self, parent: str, *, done: bool = False, **fields: Any) -> dict[str, Any]:
        return {"name": f"{parent}/operations/op-{next(self._ids)}", "done": done, **fields}

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


def _error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message}}
