"""Reaching a GKE cluster from a function: describe it with the GKE API, trust its CA, send
the function's access token; and one queue's unreachable cluster does not stop the others.

One local HTTPS server (tests/gcp/fake_gke.py) plays both the GKE API and the cluster's API
server: a cluster's description names that server as its endpoint and carries the CA that
signed its certificate, so the kubernetes client gets through only if it was built from the
description. The GKE API's own certificate is trusted through REQUESTS_CA_BUNDLE, as a
corporate proxy's would be.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google.auth
import pytest
from google.auth.credentials import Credentials as GoogleCredentials
from google.auth.exceptions import DefaultCredentialsError, RefreshError
from google.oauth2.credentials import Credentials
from kubernetes.config import ConfigException
from pydantic import ValidationError

from skypanda.adapters.gcp.gke_access import ClusterName, GkeAccess, shared_access
from skypanda.adapters.gcp.gke_launcher import GkeLauncher
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import GkeLauncherSpec
from skypanda.domain.models import Job, Queue, Resources
from skypanda.domain.states import PilotStatus
from skypanda.handlers import queues, scale
from skypanda.handlers.services import Services
from skypanda.ports import LaunchedPilot, Launcher
from skypanda.runtime.gcp import gke_factory
from skypanda.runtime.launchers import QueueLaunchers, launcher_key
from tests.gcp.fake_gke import FakeApiServer, Tls
from tests.support import FakeClock, sqlite_services

CLUSTER = "projects/my-project/locations/europe-west1/clusters/pilots"
OTHER = "projects/my-project/locations/us-central1-a/clusters/other"
TOKEN = "ya29.function-token"


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return Tls.make(tmp_path)


@pytest.fixture
def gke(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApiServer]:
    server = FakeApiServer(tls)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))  # the GKE API's certificate
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield server
    server.close()


def spec(**fields: Any) -> GkeLauncherSpec:
    return GkeLauncherSpec(kind="gke", image="europe-docker.pkg.dev/p/r/pilot:1", **fields)


def gke_queue(name: str, **fields: Any) -> Queue:
    return Queue(
        name=name, min_pilots=1, max_pilots=2, pilot_resources=Resources(memory_mb=2000, cores=1),
        launcher=spec(**fields),
    )  # fmt: skip


def launcher_on(client: Any) -> GkeLauncher:
    return GkeLauncher(client, server_url="https://skypanda.example", credential_for=lambda p: p)


def bearer(request: dict[str, Any]) -> str | None:
    headers = {k.lower(): v for k, v in request["headers"].items()}
    return headers.get("authorization")


# -- from a cluster's name to its API server ---------------------------------------------------


def test_a_function_launches_a_spot_pilot_on_the_cluster_its_queue_names(
    gke: FakeApiServer,
) -> None:
    # Given a cluster the GKE API describes (its endpoint: the local server, with its CA)
    gke.describe(CLUSTER)
    access = GkeAccess(Credentials(token=TOKEN), api_url=gke.url)
    queue = gke_queue("spot-q", cluster=CLUSTER)

    # When a pilot is launched through a client built from that description
    launcher = launcher_on(access.client_for(queue.name, spec(cluster=CLUSTER)))
    ref = launcher.launch(queue, "p-1")

    # Then the cluster was described once, with the function's token
    (described,) = gke.seen("GET", "/v1/projects/")
    assert described["path"] == f"/v1/{CLUSTER}"
    assert bearer(described) == f"Bearer {TOKEN}"
    # And the API server got the Job over TLS (its CA trusted), with the same token
    (created,) = gke.seen("POST", "/apis/batch/v1/namespaces/skypanda/jobs")
    assert bearer(created) == f"Bearer {TOKEN}"
    assert ref == "skypanda/pilot-p-1"
    # And the Job is what a spot node needs: its selector and toleration, a 15 s grace the
    # pilot is told about, Guaranteed resources
    pod = created["body"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
    assert pod["tolerations"] == [
        {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
         "effect": "NoSchedule"}
    ]  # fmt: skip
    assert pod["terminationGracePeriodSeconds"] == 15
    (container,) = pod["containers"]
    assert {"name": "SKYPANDA_STOP_GRACE", "value": "15"} in container["env"]
    assert container["resources"]["requests"] == container["resources"]["limits"]

    # And listing (by label) and stopping go through the same client
    assert [(p.pilot_id, p.alive) for p in launcher.list()] == [("p-1", True)]
    (listed,) = gke.seen("GET", "/apis/batch/v1/namespaces/skypanda/jobs")
    assert listed["query"]["labelSelector"] == "app=skypanda-pilot"
    launcher.stop("p-1")
    (deleted,) = gke.seen("DELETE", "/apis/batch/v1/")
    assert deleted["path"].endswith("/pilot-p-1") and bearer(deleted) == f"Bearer {TOKEN}"


def test_one_client_per_cluster(gke: FakeApiServer) -> None:
    gke.describe(CLUSTER)
    gke.describe(OTHER)
    access = GkeAccess(Credentials(token=TOKEN), api_url=gke.url)
    first = access.client_for("a", spec(cluster=CLUSTER))
    # Another queue on the same cluster shares its client; another cluster gets its own
    assert access.client_for("b", spec(cluster=CLUSTER)) is first
    assert access.client_for("c", spec(cluster=OTHER)) is not first
    assert [r["path"] for r in gke.seen("GET", "/v1/")] == [f"/v1/{CLUSTER}", f"/v1/{OTHER}"]


class ExpiringCredentials(GoogleCredentials):  # type: ignore[misc]
    """Google credentials whose token the test expires; each refresh makes a new one."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = f"token-{self.refreshes}"
        self.expiry = _utcnow() + datetime.timedelta(hours=1)

    def expire(self) -> None:
        self.expiry = _utcnow() - datetime.timedelta(seconds=1)


def _utcnow() -> datetime.datetime:
    """What google-auth compares expiries with: naive UTC."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def test_the_token_is_refreshed_before_it_expires(gke: FakeApiServer) -> None:
    # Given a client built with a fresh token
    gke.describe(CLUSTER)
    creds = ExpiringCredentials()
    launcher = launcher_on(GkeAccess(creds, api_url=gke.url).client_for("q", spec(cluster=CLUSTER)))
    launcher.launch(gke_queue("q", cluster=CLUSTER), "p-1")
    # When the token expires (a function instance outlives an access token)
    creds.expire()
    launcher.launch(gke_queue("q", cluster=CLUSTER), "p-2")
    # Then the next call carried a new one
    posts = gke.seen("POST", "/apis/")
    assert [bearer(r) for r in posts] == ["Bearer token-1", "Bearer token-2"]
    assert creds.refreshes == 2


# -- what goes wrong, as skypanda errors naming the queue and the cluster ------------------------


@pytest.mark.parametrize(
    "name",
    [
        "pilots",
        "projects/my-project/clusters/pilots",
        "projects/My-Project/locations/europe-west1/clusters/pilots",
        "projects/my-project/locations/europe-west1/clusters/Pilots",
        "projects/my-project/locations/europe-west1/clusters/pilots/",
        "https://container.googleapis.com/v1/" + CLUSTER,
    ],
)
def test_a_malformed_cluster_name_is_refused(name: str) -> None:
    # by the queue definition, and by the access layer for a name that bypassed it
    with pytest.raises(ValidationError, match="cluster"):
        spec(cluster=name)
    with pytest.raises(InvalidInput, match=r"queue q: launcher\.cluster .* is not 'projects/"):
        ClusterName.parse(name, queue="q")


@pytest.mark.parametrize(
    ("answer", "retryable", "message"),
    [
        (403, False, "describe failed: 403 Required 'container.clusters.get' permission"),
        (503, True, "describe failed: 503"),
        ({"status": "PROVISIONING"}, True, "gave no endpoint .cluster status PROVISIONING"),
        ({"masterAuth": {}}, False, "gave no masterAuth.clusterCaCertificate"),
        ({"masterAuth": {"clusterCaCertificate": "not base64!"}}, False, "bad cluster CA"),
        (
            {"masterAuth": {"clusterCaCertificate": base64.b64encode(b"junk").decode()}},
            False,
            "bad cluster CA",
        ),
    ],
)
def test_what_the_gke_api_answers_wrong_is_a_backend_error(
    gke: FakeApiServer, answer: int | dict[str, Any], retryable: bool, message: str
) -> None:
    if isinstance(answer, int):
        gke.clusters[CLUSTER] = answer
    else:
        description = gke.describe(CLUSTER)
        description.update(answer)
        if answer.get("status") == "PROVISIONING":
            del description["endpoint"]
    access = GkeAccess(Credentials(token=TOKEN), api_url=gke.url)
    with pytest.raises(BackendUnavailable, match=message) as info:
        access.client_for("q", spec(cluster=CLUSTER))
    assert str(info.value).startswith(f"queue q: GKE cluster {CLUSTER}: ")
    assert info.value.retryable is retryable
    # And a failure is not kept: once the cluster is described, the next try gets through
    gke.describe(CLUSTER)
    assert access.client_for("q", spec(cluster=CLUSTER)) is not None


def test_no_google_credentials_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_credentials(**kwargs: Any) -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    with pytest.raises(InvalidInput, match=f"queue q: GKE cluster {CLUSTER}: no Google cred"):
        GkeAccess(api_url="https://127.0.0.1:1").client_for("q", spec(cluster=CLUSTER))


def test_a_token_that_cannot_be_refreshed_is_a_backend_error(gke: FakeApiServer) -> None:
    class Revoked(ExpiringCredentials):
        def refresh(self, request: Any) -> None:
            raise RefreshError("invalid_grant: account disabled")

    gke.describe(CLUSTER)
    with pytest.raises(BackendUnavailable, match="cannot get an access token: invalid_grant"):
        GkeAccess(Revoked(), api_url=gke.url).client_for("q", spec(cluster=CLUSTER))


def test_no_cluster_and_no_kubeconfig_says_what_to_name(tmp_path: Path) -> None:
    # A kubeconfig context that is not there (a function has no kubeconfig at all)
    with pytest.raises(InvalidInput, match=r"queue q: cannot reach Kubernetes .*launcher\.cluster"):
        GkeAccess(Credentials(token=TOKEN)).client_for("q", spec(context="no-such-context-x"))


# -- one queue's cluster failing does not stop the others -------------------------------------


def test_each_cluster_has_its_launcher_and_failures_are_the_queues_own() -> None:
    a, b = gke_queue("a", cluster=CLUSTER), gke_queue("b", cluster=OTHER)
    assert launcher_key(a) == f"gke:{CLUSTER}" and launcher_key(gke_queue("c")) == "gke"
    made: dict[str, Recording] = {}

    def factory(queue: Queue) -> Launcher:
        if queue.name == "b":
            raise ConfigException("Invalid kube-config file. No configuration found.")
        return made.setdefault(queue.name, Recording())

    launchers = QueueLaunchers({"gke": factory})
    assert launchers.launch(a, "p-a") == "rec:p-a"
    # A factory's own exception is a skypanda error naming the queue; nothing is kept
    with pytest.raises(BackendUnavailable, match="queue b: cannot make its gke launcher: Config"):
        launchers.launch(b, "p-b")
    # A launcher's failure too; and one that cannot list is left out of the list
    made["a"].broken = True
    with pytest.raises(BackendUnavailable, match="queue a: gke launch failed: RuntimeError"):
        launchers.launch(a, "p-a2")
    assert launchers.list() == []


class Recording:
    def __init__(self) -> None:
        self.launched: list[str] = []
        self.broken = False

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        if self.broken:
            raise RuntimeError("connection reset")
        self.launched.append(pilot_id)
        return f"rec:{pilot_id}"

    def list(self) -> list[LaunchedPilot]:
        if self.broken:
            raise RuntimeError("connection reset")
        return [LaunchedPilot(pilot_id=p, ref=f"rec:{p}", alive=True) for p in self.launched]

    def stop(self, pilot_id: str) -> None:
        pass


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def test_scaling_launches_on_the_cluster_that_answers_and_records_the_others_failure(
    gke: FakeApiServer, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's default credentials, and three GKE queues: one whose cluster the
    # function may not describe (403), one on a kubeconfig context that is not there (a
    # ConfigException), one whose cluster answers
    monkeypatch.setattr(google.auth, "default", lambda **kw: (Credentials(token=TOKEN), "p"))
    gke.clusters[OTHER] = 403
    gke.describe(CLUSTER)
    svc.store.put_queue(gke_queue("denied", cluster=OTHER))
    svc.store.put_queue(gke_queue("laptop", context="no-such-context-x"))
    svc.store.put_queue(gke_queue("works", cluster=CLUSTER))
    svc.launcher = QueueLaunchers({"gke": gke_factory("https://skypanda.example", lambda p: p,
                                                      gke_api=gke.url)})  # fmt: skip
    try:
        # When the scaler runs
        launched = scale.handle(svc)
    finally:
        shared_access.cache_clear()

    # Then the queue whose cluster answers got its pilot, on that cluster
    assert launched == 1
    (created,) = gke.seen("POST", "/apis/batch/v1/")
    assert created["body"]["metadata"]["labels"]["skypanda/queue"] == "works"
    # And each other queue's failure is recorded, named, and counted for its back-off
    notes = {q["name"]: q["last_decision"] for q in queues.overview(svc)}
    assert notes["denied"].startswith(f"cannot launch pilots: queue denied: GKE cluster {OTHER}: ")
    assert "403 Required 'container.clusters.get' permission" in notes["denied"]
    assert notes["laptop"].startswith("cannot launch pilots: queue laptop: cannot reach Kube")
    assert notes["works"].endswith("launch 1 (target 1)")
    for name in ("denied", "laptop"):
        (pilot,) = svc.store.list_pilots(queue=name)
        assert pilot.status is PilotStatus.FAILED and pilot.reason.startswith("launch failed:")
