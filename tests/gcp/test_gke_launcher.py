"""The GKE launcher through the real `kubernetes` client, against a local recording API server.

There is no Kubernetes API server here: `FakeApiServer` answers the batch/v1 Job routes the way
the API server does (create echoes the object with uid and status, list filters by label, delete
returns a Status) and records every request, so the tests assert what a cluster would receive.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client as k8s

from skypanda.adapters.gcp.gke_launcher import GkeLauncher, job_name
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import GkeLauncherSpec, Toleration
from skypanda.domain.models import Job, Queue, Resources
from skypanda.domain.states import JobStatus

_ROUTE = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?$")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class FakeApiServer:
    """Records requests; keeps Jobs by (namespace, name)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_next: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urlparse(self.path)
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else None
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                server.requests.append(  # a copy: the server keeps and amends `body`
                    {"method": self.command, "path": url.path, "query": query,
                     "body": copy.deepcopy(body)}
                )  # fmt: skip
                code, reply = server.answer(self.command, url.path, query, body)
                self._reply(code, reply)

            do_GET = do_POST = do_DELETE = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @staticmethod
    def _status(code: int, reason: str, message: str = "") -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                "reason": reason, "message": message}  # fmt: skip

    def answer(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any]]:
        if self.fail_next is not None:
            code, self.fail_next = self.fail_next, None
            return code, self._status(code, "InternalError")
        m = _ROUTE.match(path)
        if m is None:
            return 404, self._status(404, "NotFound", path)
        ns, name = m.groups()
        if method == "POST" and name is None:
            key = (ns, body["metadata"]["name"])
            if key in self.jobs:
                return 409, self._status(409, "AlreadyExists")
            body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion="1")
            body["status"] = {"active": 1}
            self.jobs[key] = body
            return 201, body
        if method == "GET" and name is None:
            want = dict(kv.split("=", 1) for kv in query.get("labelSelector", "").split(",") if kv)
            items = [
                j
                for (jns, _), j in self.jobs.items()
                if jns == ns and all(j["metadata"]["labels"].get(k) == v for k, v in want.items())
            ]
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                         "items": items}  # fmt: skip
        if method == "DELETE" and name is not None:
            if self.jobs.pop((ns, name), None) is None:
                return 404, self._status(404, "NotFound", name)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        return 405, self._status(405, "MethodNotAllowed")

    def finish(self, ns: str, name: str, condition: str) -> None:
        """The Job's pod ended: Complete or Failed, as the Job controller would record it."""
        status: dict[str, Any] = {"conditions": [{"type": condition, "status": "True"}]}
        status["succeeded" if condition == "Complete" else "failed"] = 1
        self.jobs[(ns, name)]["status"] = status


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.close()


def launch_credential(pilot_id: str) -> str:
    """Stands for PilotCredentials.issue_launch: one credential per pilot."""
    return f"launch-credential-of-{pilot_id}"


def make_launcher(api: FakeApiServer) -> GkeLauncher:
    cfg = k8s.Configuration(host=api.url)
    return GkeLauncher(
        k8s.ApiClient(cfg), server_url="https://skypanda.example", credential_for=launch_credential
    )


def gke_queue(**spec: Any) -> Queue:
    launcher = GkeLauncherSpec(kind="gke", image="europe-docker.pkg.dev/p/r/pilot:1", **spec)
    return Queue(
        name="gke-q",
        pilot_resources=Resources(memory_mb=8000, cores=4),
        launcher=launcher,
    )


def make_job(memory_mb: int, cores: int) -> Job:
    return Job(
        id="t1-000007",
        task_id="t1",
        index=7,
        status=JobStatus.ACTIVATED,
        queue="gke-q",
        command=["true"],
        resources=Resources(memory_mb=memory_mb, cores=cores),
        created_at=0.0,
        updated_at=0.0,
    )


class _Response:
    """What ApiClient.deserialize reads: a body in `.data`."""

    def __init__(self, data: str) -> None:
        self.data = data


def roundtrip(job: k8s.V1Job) -> k8s.V1Job:
    """To the wire and back with the client's own (de)serializer."""
    text = json.dumps(k8s.ApiClient().sanitize_for_serialization(job))
    try:  # kubernetes >= 35: (text, type, content type)
        return k8s.ApiClient().deserialize(text, "V1Job", "application/json")
    except TypeError:  # older clients read a response object
        return k8s.ApiClient().deserialize(_Response(text), "V1Job")


def env_of(container: k8s.V1Container) -> dict[str, k8s.V1EnvVar]:
    return {e.name: e for e in container.env}


# -- the manifest ------------------------------------------------------------------------------


def test_manifest_round_trips_through_the_client_models() -> None:
    # Given a manifest built with the client's models
    job = make_launcher_offline().manifest(gke_queue(), "p-abc123")
    # Then its wire form decodes back to an equal V1Job
    assert roundtrip(job) == job
    assert k8s.ApiClient().sanitize_for_serialization(job)["apiVersion"] == "batch/v1"


def make_launcher_offline() -> GkeLauncher:
    return GkeLauncher(
        k8s.ApiClient(), server_url="https://skypanda.example", credential_for=launch_credential
    )


def test_manifest_essential_fields() -> None:
    # Given a spot queue with its own selector, toleration and service account
    queue = gke_queue(
        node_selector={"pool": "pilots"},
        tolerations=[Toleration(key="dedicated", value="pilots", effect="NoSchedule")],
        service_account="pilot-sa",
        ttl_after_finished_s=600,
    )
    # When its pilot's Job is built
    job = make_launcher_offline().manifest(queue, "p-abc123")
    meta, spec = job.metadata, job.spec
    pod = spec.template.spec
    (container,) = pod.containers
    # Then names, labels, Job policy and pod policy are the ones a pilot needs
    assert meta.name == "pilot-p-abc123" and DNS_1123.match(meta.name)
    assert meta.namespace == "skypanda"
    labels = {"app": "skypanda-pilot", "skypanda/queue": "gke-q", "skypanda/pilot": "p-abc123"}
    assert meta.labels == labels and spec.template.metadata.labels == labels
    assert spec.backoff_limit == 0 and spec.ttl_seconds_after_finished == 600
    assert pod.restart_policy == "Never" and pod.service_account_name == "pilot-sa"
    assert pod.termination_grace_period_seconds >= 30
    annotations = spec.template.metadata.annotations
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    # spot placement plus the queue's own
    assert pod.node_selector == {"cloud.google.com/gke-spot": "true", "pool": "pilots"}
    tolerations = {(t.key, t.operator, t.value, t.effect) for t in pod.tolerations}
    assert tolerations == {
        ("cloud.google.com/gke-spot", "Equal", "true", "NoSchedule"),
        ("dedicated", "Equal", "pilots", "NoSchedule"),
    }
    # resources: requests = limits = the queue's pilot size; the pilot offers exactly that
    assert container.resources.requests == {"memory": "8000Mi", "cpu": "4"}
    assert container.resources.limits == container.resources.requests
    assert container.command == ["python3", "-m", "skypanda", "pilot"]
    assert container.args == ["--memory-mb", "8000", "--cores", "4"]
    # environment: this pilot's own launch credential, no Secret (no deployment token)
    env = env_of(container)
    assert env["SKYPANDA_SERVER"].value == "https://skypanda.example"
    assert env["SKYPANDA_QUEUE"].value == "gke-q"
    assert env["SKYPANDA_PILOT_ID"].value == "p-abc123"
    token = env["SKYPANDA_TOKEN"]
    assert token.value == "launch-credential-of-p-abc123" and token.value_from is None
    assert all(e.value_from is None for e in container.env)
    assert "SKYPANDA_PUSH_JOB" not in env


def test_no_spot_means_no_spot_selector() -> None:
    pod = make_launcher_offline().manifest(gke_queue(spot=False), "p1").spec.template.spec
    assert pod.node_selector is None and pod.tolerations is None


@pytest.mark.parametrize(
    "pilot_id", ["P_1.x", "p1", "x" * 100, "UPPER", "a..b__c", "p-" + "9" * 80, "___"]
)
def test_job_names_are_dns_1123_and_distinct(pilot_id: str) -> None:
    name = job_name(pilot_id)
    assert len(name) <= 63 and DNS_1123.match(name)
    assert job_name(pilot_id.swapcase()) != name or pilot_id.swapcase() == pilot_id


def test_odd_pilot_ids_keep_exact_id_in_annotation_and_valid_labels() -> None:
    pilot_id = "P_" + "x" * 90 + "."
    job = make_launcher_offline().manifest(gke_queue(), pilot_id)
    assert job.metadata.annotations["skypanda/pilot-id"] == pilot_id
    label = job.metadata.labels["skypanda/pilot"]
    assert len(label) <= 63 and re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", label)


def test_push_mode_sized_to_the_job() -> None:
    # Given a push-mode pilot for a 3000 MB, 2-core job
    job = make_launcher_offline().manifest(gke_queue(), "p-push", make_job(3000, 2))
    (container,) = job.spec.template.spec.containers
    # Then the container asks for exactly that, and is told which job to run
    assert container.resources.requests == {"memory": "3000Mi", "cpu": "2"}
    assert container.resources.limits == {"memory": "3000Mi", "cpu": "2"}
    assert container.args == ["--memory-mb", "3000", "--cores", "2"]
    assert env_of(container)["SKYPANDA_PUSH_JOB"].value == "t1-000007"


def test_a_queue_of_another_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not 'gke'"):
        make_launcher_offline().manifest(Queue(name="local-q"), "p1")


# -- through the real client -------------------------------------------------------------------


def test_launch_sends_the_manifest(api: FakeApiServer) -> None:
    launcher = make_launcher(api)
    queue = gke_queue()
    # When a pilot is launched
    ref = launcher.launch(queue, "p-abc123")
    # Then the API server received one POST with the manifest's wire form
    assert ref == "skypanda/pilot-p-abc123"
    (req,) = api.requests
    assert req["method"] == "POST"
    assert req["path"] == "/apis/batch/v1/namespaces/skypanda/jobs"
    expected = k8s.ApiClient().sanitize_for_serialization(launcher.manifest(queue, "p-abc123"))
    assert req["body"] == expected
    pod = req["body"]["spec"]["template"]["spec"]
    assert req["body"]["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["env"][3] == {
        "name": "SKYPANDA_TOKEN",
        "value": "launch-credential-of-p-abc123",
    }


def test_launch_is_idempotent(api: FakeApiServer) -> None:
    launcher = make_launcher(api)
    first = launcher.launch(gke_queue(), "p1")
    # a retried launch meets 409 AlreadyExists: taken as launched
    assert launcher.launch(gke_queue(), "p1") == first
    assert len(api.jobs) == 1


def test_server_errors_become_backend_errors(api: FakeApiServer) -> None:
    api.fail_next = 503
    with pytest.raises(BackendUnavailable) as info:
        make_launcher(api).launch(gke_queue(), "p1")
    assert info.value.retryable and info.value.context["status"] == 503


def test_list_maps_alive_and_exit_codes_and_reports_vanished_jobs(api: FakeApiServer) -> None:
    # Given four launched pilots
    launcher = make_launcher(api)
    for p in ("p-run", "p-ok", "p-bad", "p-gone"):
        launcher.launch(gke_queue(), p)
    # When one completes, one fails and one's Job is deleted behind the launcher's back
    api.finish("skypanda", "pilot-p-ok", "Complete")
    api.finish("skypanda", "pilot-p-bad", "Failed")
    del api.jobs[("skypanda", "pilot-p-gone")]
    api.requests.clear()
    seen = {p.pilot_id: p for p in launcher.list()}
    # Then the list request filters on the app label
    (req,) = api.requests
    assert req["method"] == "GET" and req["path"] == "/apis/batch/v1/namespaces/skypanda/jobs"
    assert req["query"]["labelSelector"] == "app=skypanda-pilot"
    # And each pilot is reported with its state
    assert (seen["p-run"].alive, seen["p-run"].exit_code) == (True, None)
    assert (seen["p-ok"].alive, seen["p-ok"].exit_code) == (False, 0)
    assert (seen["p-bad"].alive, seen["p-bad"].exit_code) == (False, 1)
    assert (seen["p-gone"].alive, seen["p-gone"].exit_code) == (False, None)
    assert seen["p-gone"].ref == "skypanda/pilot-p-gone"
    # And a forgotten vanished pilot is no longer reported
    launcher.forget("p-gone")
    assert "p-gone" not in {p.pilot_id for p in launcher.list()}


def test_list_ignores_jobs_without_a_pilot_annotation(api: FakeApiServer) -> None:
    launcher = make_launcher(api)
    launcher.launch(gke_queue(), "p1")
    api.jobs[("skypanda", "other")] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "other", "namespace": "skypanda", "labels": {"app": "skypanda-pilot"}},
    }
    assert [p.pilot_id for p in launcher.list()] == ["p1"]


def test_stop_deletes_in_foreground(api: FakeApiServer) -> None:
    launcher = make_launcher(api)
    launcher.launch(gke_queue(), "p1")
    api.requests.clear()
    # When the pilot is stopped
    launcher.stop("p1")
    # Then its Job is deleted, pods first (they get SIGTERM and their grace period)
    (req,) = api.requests
    assert req["method"] == "DELETE"
    assert req["path"] == "/apis/batch/v1/namespaces/skypanda/jobs/pilot-p1"
    assert req["query"]["propagationPolicy"] == "Foreground"
    assert not api.jobs
    # And stopping it again (already gone) is not an error
    launcher.stop("p1")
    assert [r["method"] for r in api.requests] == ["DELETE", "DELETE"]
