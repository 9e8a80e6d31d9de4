"""The GKE launcher through the real `kubernetes` client, against a local recording API server.

There is no Kubernetes API server here: `FakeApiServer` (tests/gcp/fake_gke.py) answers the
batch/v1 Job routes the way the API server does (create echoes the object with uid and status,
list filters by label, delete returns a Status) and records every request, so the tests assert
what a cluster would receive. The last tests run a pilot as the pod would, SIGTERM included.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from skypanda.adapters.gcp.gke_launcher import GkeLauncher, job_name
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import GkeLauncherSpec, Toleration
from skypanda.domain.models import Job, Queue, Resources
from skypanda.domain.states import JobStatus
from skypanda.pilot.stopping import StopBudget
from skypanda.wire.codes import ErrorCode
from tests.gcp.fake_gke import FakeApiServer

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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
    # a spot VM gives 15 s from SIGTERM to SIGKILL: the pod asks no more, the pilot is told
    assert pod.termination_grace_period_seconds == 15
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
    assert env["SKYPANDA_STOP_GRACE"].value == "15"


def test_no_spot_means_no_spot_selector_and_the_default_grace() -> None:
    pod = make_launcher_offline().manifest(gke_queue(spot=False), "p1").spec.template.spec
    assert pod.node_selector is None and pod.tolerations is None
    assert pod.termination_grace_period_seconds == 30
    assert env_of(pod.containers[0])["SKYPANDA_STOP_GRACE"].value == "30"


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
    assert pod["terminationGracePeriodSeconds"] == 15
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


def test_an_api_server_that_does_not_answer_is_a_retryable_backend_error() -> None:
    # Given an API server that has gone away (its port closed)
    gone = FakeApiServer()
    gone.close()
    cfg = k8s.Configuration(host=gone.url)
    cfg.retries = 0
    launcher = GkeLauncher(
        k8s.ApiClient(cfg),
        server_url="https://skypanda.example",
        credential_for=launch_credential,
        namespaces=["skypanda"],
    )
    # Then launching, listing and stopping fail as skypanda errors, worth retrying
    with pytest.raises(BackendUnavailable, match="create job skypanda/pilot-p1") as info:
        launcher.launch(gke_queue(), "p1")
    assert info.value.retryable
    with pytest.raises(BackendUnavailable, match="list jobs in skypanda"):
        launcher.list()
    with pytest.raises(BackendUnavailable, match="delete job skypanda/pilot-p1"):
        launcher.stop("p1")


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


# -- the pilot within a spot VM's grace ---------------------------------------------------------


def test_the_stop_budget_fits_the_grace() -> None:
    clock = [100.0]
    budget = StopBudget(15.0, kill_s=3.0, clock=lambda: clock[0])
    # Before SIGTERM nothing is cut
    assert budget.left() is None and budget.cap(None) is None and budget.cap(30.0) == 30.0
    # Of a spot VM's 15 s, 2 are kept back; payloads get their usual 3 s to stop
    assert budget.usable_s == 13.0 and budget.kill_s == 3.0
    budget.start()
    clock[0] += 5.0
    budget.start()  # a second signal does not restart the budget
    assert budget.left() == 8.0
    assert budget.cap(30.0) == 8.0 and budget.cap(2.0) == 2.0
    assert budget.cap(None, keep_s=3.0) == 5.0  # the rest kept for ending the pilot
    clock[0] += 60.0
    assert budget.left() == 0.0
    # A short grace shortens the payloads' own; no grace, no limit
    assert StopBudget(4.0, kill_s=3.0).kill_s == pytest.approx(0.8)
    assert StopBudget(None, kill_s=3.0).kill_s == 3.0


class _PilotServer:
    """The skypanda API as one pilot sees it: registers it, gives it one job, takes its
    reports; `/end` hangs until closed (a server slower than the grace allows)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.release = threading.Event()
        jobs = [job]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size) if size else b""
                body = json.loads(raw) if raw.startswith(b"{") else None
                server.posts.append((self.path, body))
                if self.path.endswith("/end"):
                    server.release.wait(60)
                reply: dict[str, Any] = {}
                if self.path == "/v1/pilots":
                    reply = {"pilot": {"id": "p-spot"}, "queue": {}}
                elif self.path.endswith("/acquire"):
                    reply = {"jobs": [jobs.pop()] if jobs else []}
                data = json.dumps(reply).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the pilot gave up on this call (its grace ran out)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def reports(self) -> list[dict[str, Any]]:
        return [r for path, body in list(self.posts) if path.endswith("/update")
                for r in body["reports"]]  # fmt: skip

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def test_a_preempted_pilot_reports_and_exits_within_the_grace(tmp_path: Path) -> None:
    # Given a pilot told its grace (as the launcher tells it on a spot node), running a payload
    # that ignores SIGTERM, for a server whose /end answers later than the grace allows
    grace = 8
    started = tmp_path / "started"
    command = ["sh", "-c", f"trap '' TERM; touch {started}; exec sleep 600"]
    server = _PilotServer({"id": "t1-000001", "attempt": 1, "command": command})
    env = {**os.environ, "SKYPANDA_STOP_GRACE": str(grace), "SKYPANDA_TOKEN": "t"}
    log = tmp_path / "pilot.log"
    with log.open("wb") as stderr:
        pilot = subprocess.Popen(
            [sys.executable, "-m", "skypanda", "pilot", "--server", server.url, "--queue", "gke-q",
             "--pilot-id", "p-spot", "--memory-mb", "100", "--cores", "1",
             "--workdir", str(tmp_path / "work")],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        wait_for(lambda: started.exists() or pilot.poll() is not None, "the payload to start")
        assert pilot.poll() is None, log.read_text()
        # When the node is reclaimed: SIGTERM, SIGKILL `grace` seconds later
        sigterm_at = time.monotonic()
        pilot.send_signal(signal.SIGTERM)
        code = pilot.wait(timeout=120)
        took = time.monotonic() - sigterm_at
    finally:
        if pilot.poll() is None:
            pilot.kill()
            pilot.wait()
        server.close()
    # Then it killed the payload, reported the job preempted and tried to end, all in time
    assert code == 0
    assert took < grace, f"stopping took {took:.1f} s, the grace is {grace} s: {log.read_text()}"
    final = [r for r in server.reports() if r["status"] == "failed"]
    assert [(r["job_id"], r["error_code"]) for r in final] == [("t1-000001", ErrorCode.SIGTERM)]
    ends = [body for path, body in server.posts if path.endswith("/end")]
    assert ends == [{"status": "cancelled", "reason": "SIGTERM"}]


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
