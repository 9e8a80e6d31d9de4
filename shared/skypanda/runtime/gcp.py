"""Build the gcp backend's services from the environment (what a Cloud Function instance does).

Environment:
    GOOGLE_CLOUD_PROJECT   optional: the project; by default the one google.auth.default()
                           finds (on Cloud Functions: the metadata server's)
    SKYPANDA_BUCKET        Cloud Storage bucket for logs and outputs
    SKYPANDA_TOKEN         the API token (from Secret Manager); pilots never get it
    SKYPANDA_SIGNING_KEY   optional key (32+ bytes, from Secret Manager) signing pilots' launch
                           and pilot credentials; by default one derived from SKYPANDA_TOKEN
    SKYPANDA_LAUNCH_TTL_S  optional lifetime of a pilot's launch credential (default 3600 s):
                           longer than a pilot may wait to start (an execution or pod queued
                           for capacity)
    SKYPANDA_RESEND_AFTER_S  optional: the sweep sends again outbox events not handled this
                           long after they were sent (default 300 s)
    SKYPANDA_PREFIX        optional prefix for collections and topics (several deployments
                           in one project, or one test per prefix)
    SKYPANDA_SERVER_URL    the URL pilots reach the API at (the dispatch function's); with it,
                           the scaler launches pilots on Cloud Run or GKE as each queue says,
                           each with a launch credential of its own (adapters.pilot_credentials)
The emulators are used when the usual `*_EMULATOR_HOST` variables are set.
"""

from __future__ import annotations

import hmac
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skypanda.adapters.clock import SystemClock
from skypanda.adapters.gcp.google_ids import google_ids_from_env
from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.oidc import oidc_from_env
from skypanda.adapters.pilot_credentials import (
    DEFAULT_LAUNCH_TTL_S,
    PilotCredentials,
    WithPilotCredentials,
)
from skypanda.domain.errors import InvalidInput
from skypanda.domain.identity import Role
from skypanda.domain.models import Queue
from skypanda.domain.quota import Quota
from skypanda.handlers.services import Services
from skypanda.ports import Identity, Launcher
from skypanda.runtime.deployment import FUNCTIONS
from skypanda.runtime.launchers import Factory, QueueLaunchers

if TYPE_CHECKING:
    from skypanda.adapters.gcp.doorbell import FirestoreDoorbell

CredentialFor = Callable[[str], str]

LONG_POLLS = FUNCTIONS["dispatch"].concurrency * 3 // 4
"""Long-poll acquires that may wait at once in one dispatch instance (30 of its 40 concurrent
requests): the others serve reports and heartbeats. Beyond, an acquire answers at once (and
the pilot asks again), so a crowd of idle pilots never ties up every request of an instance.
Each wait is bounded by dispatch.MAX_WAIT_S (30 s), well within the function's timeout (300 s,
runtime.deployment)."""
"""A pilot id -> its launch credential (PilotCredentials.issue_launch)."""

PILOT_LONG_POLL_S = 20.0
"""How long a pilot's acquire may wait in the dispatch function (told at registration:
`long_poll_s`; a local server tells none, and its pilots wait `agent.LONG_POLL_S`, 2 s):
within dispatch.MAX_WAIT_S and well within a pilot's HTTP timeout (30 s). An idle pilot
then asks about 3 times a minute instead of 30 (each ask an invocation, a listener opened
and a look for work), and still takes a job as soon as it is activated."""
PILOT_REPORT_DELAY_S = 0.15
"""The longest a pilot's report waits for others to go with it (told at registration:
`report_delay_s`; a local server tells none: `pilot.reporting.REPORT_DELAY_S`, 0.05 s): each
/update is a billed invocation of the dispatch function and a few reads."""


def cloudrun_factory(server_url: str, credential_for: CredentialFor) -> Factory:
    """One CloudRunLauncher for every Cloud Run queue. It starts out looking at the location of
    the queue it is made for (so `list` and `stop` find pilots an earlier instance launched
    there) and adds each location it launches in."""

    def make(queue: Queue) -> Launcher:
        from skypanda.adapters.gcp.cloudrun_launcher import CloudRunLauncher
        from skypanda.domain.launchers import CloudRunLauncherSpec

        spec = queue.launcher
        locations = (
            [f"projects/{spec.project}/locations/{spec.region}"]
            if isinstance(spec, CloudRunLauncherSpec)
            else []
        )
        return CloudRunLauncher(
            server_url=server_url, credential_for=credential_for, locations=locations
        )

    return make


def gke_factory(
    server_url: str, credential_for: CredentialFor, *, gke_api: str | None = None
) -> Factory:
    """GKE launchers, one per cluster (QueueLaunchers asks once per cluster or context): a
    queue naming `launcher.cluster` is reached through the GKE API with the function's own
    credentials (adapters.gcp.gke_access, its clients cached per cluster for the process;
    `gke_api`, else $SKYPANDA_GKE_API, overrides the API's URL), else through a kubeconfig
    `context` or in-cluster credentials.

    The factory raises InvalidInput or BackendUnavailable naming the queue and the cluster
    when the cluster cannot be reached (QueueLaunchers then keeps nothing, and the scaler
    counts it as that queue's failure)."""

    def make(queue: Queue) -> Launcher:
        try:
            from skypanda.adapters.gcp.gke_access import shared_access
            from skypanda.adapters.gcp.gke_launcher import GkeLauncher, spec_of
        except ImportError as e:  # the kubernetes client comes with the k8s extra
            raise InvalidInput(
                f"queue {queue.name}: GKE pilots need the kubernetes client: "
                "pip install 'skypanda[k8s]'"
            ) from e

        api_client = shared_access(gke_api).client_for(queue.name, spec_of(queue))
        return GkeLauncher(api_client, server_url=server_url, credential_for=credential_for)

    return make


def project_id() -> str:
    """GOOGLE_CLOUD_PROJECT, else the project of the default credentials (current runtimes set
    no project variable; the metadata server knows it).

    Raises:
        InvalidInput: neither says.
    """
    if project := os.environ.get("GOOGLE_CLOUD_PROJECT"):
        return project
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        _credentials, project = google.auth.default()
    except DefaultCredentialsError as e:
        raise InvalidInput(f"no Google Cloud project: set GOOGLE_CLOUD_PROJECT ({e})") from e
    if not project:
        raise InvalidInput("no Google Cloud project: set GOOGLE_CLOUD_PROJECT")
    return str(project)


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise InvalidInput(f"environment variable {name} is not set")
    return value


def services_from_env() -> tuple[Services, Identity]:
    """Services on Firestore, Pub/Sub and Cloud Storage, and who may call the API: the
    deployment's token (SKYPANDA_TOKEN) as an admin. (Per-user identity on Google Cloud, OIDC
    and Google ID tokens, is issue 12's next step.)

    Raises:
        InvalidInput: a required variable is missing (named in the message).
    """
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.cloud import firestore

    from skypanda.adapters.gcp.firestore import FirestoreStore
    from skypanda.adapters.gcp.gcs_blobs import GcsBlobs, client_from_env
    from skypanda.adapters.gcp.pubsub_bus import PubSubBus
    from skypanda.adapters.gcp.pubsub_notifier import PubSubNotifier

    project = project_id()
    prefix = os.environ.get("SKYPANDA_PREFIX", "")
    client = firestore.Client(project=project)
    store = FirestoreStore(client, clock=time.time, prefix=prefix)
    publisher = pubsub_v1.PublisherClient()
    bus = PubSubBus(publisher, project, prefix=f"{prefix}skypanda")
    blobs = GcsBlobs(client_from_env(project), _need("SKYPANDA_BUCKET"))
    svc = Services(store=store, bus=bus, blobs=blobs, clock=SystemClock())
    svc.quota = Quota.from_env(os.environ)
    svc.doorbell = cloud_doorbell(client, store.collection("jobs"))
    svc.notifier = PubSubNotifier(publisher, project, prefix=f"{prefix}skypanda")
    # Eventarc and Pub/Sub may lose a delivery: the sweep sends again what is not handled.
    svc.settings["resend_lost_after_s"] = _seconds("SKYPANDA_RESEND_AFTER_S", 300.0)
    svc.settings["long_poll_s"] = PILOT_LONG_POLL_S
    svc.settings["report_delay_s"] = PILOT_REPORT_DELAY_S
    token = _need("SKYPANDA_TOKEN")
    people = LocalTokens(None)
    people.accept(token, "deployment", Role.ADMIN)
    # Every function instance must sign and verify pilots' credentials with the same key: the
    # scale function signs launch credentials, dispatch verifies them and signs pilot ones.
    # SKYPANDA_SIGNING_KEY (from Secret Manager), else one derived from the deployment token.
    key = os.environ.get("SKYPANDA_SIGNING_KEY", "").encode() or hmac.digest(
        token.encode(), b"skypanda pilot credentials", "sha256"
    )
    launch_ttl_s = _seconds("SKYPANDA_LAUNCH_TTL_S", DEFAULT_LAUNCH_TTL_S)
    pilots = PilotCredentials(key, launch_ttl_s=launch_ttl_s)
    server_url = os.environ.get("SKYPANDA_SERVER_URL")
    if server_url:
        # Each pilot gets a launch credential of its own, never the deployment's token.
        launch = pilots.issue_launch
        svc.launcher = QueueLaunchers(
            {
                "cloudrun": cloudrun_factory(server_url, launch),
                "gke": gke_factory(server_url, launch),
            }
        )
    identity = WithPilotCredentials(people, pilots, oidc_from_env(), google_ids_from_env())
    return svc, identity


def cloud_doorbell(client: Any, jobs: str, max_waiters: int = LONG_POLLS) -> FirestoreDoorbell:
    """The doorbell of pilots' long-poll acquires in a dispatch function instance: Firestore
    listeners on the queues' heads, opened while an acquire waits (adapters.gcp.doorbell).
    `jobs`: the jobs collection's name (with the deployment's prefix)."""
    from skypanda.adapters.gcp.doorbell import FirestoreDoorbell

    return FirestoreDoorbell(client.collection(jobs), max_waiters=max_waiters)


def _seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment, or `default` when unset.

    Raises:
        InvalidInput: the value is not a positive number (named in the message).
    """
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError as e:
        raise InvalidInput(f"{name} must be a number of seconds, not {value!r}") from e
    if not (math.isfinite(seconds) and seconds > 0):
        raise InvalidInput(f"{name} must be a positive number of seconds, not {value!r}")
    return seconds
