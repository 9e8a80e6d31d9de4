"""Reaching a Kubernetes API server: a GKE cluster through google-auth, or a kubeconfig.

A Cloud Function has no kubeconfig and runs in no cluster, so a queue names its GKE cluster
(`launcher.cluster: projects/P/locations/L/clusters/C`) and the scaler reaches it the way
`gcloud container clusters get-credentials` would, without gcloud:

    1. describe the cluster with the GKE API, `GET {api}/v1/projects/P/locations/L/clusters/C`,
       through an AuthorizedSession on the function's own credentials (cloud-platform scope);
    2. take its `endpoint` (the control plane's address) and `masterAuth.clusterCaCertificate`
       (base64 PEM: the CA that signed the API server's certificate);
    3. build a `kubernetes.client.ApiClient` for https://ENDPOINT that trusts that CA only and
       sends `Authorization: Bearer <access token>` of the same credentials, refreshed by
       `Configuration.refresh_api_key_hook` before it expires (a function instance lives for
       hours; an access token for one).

The service account needs `container.clusters.get` and, in the cluster, the right to create,
list and delete Jobs in the queue's namespace (e.g. roles/container.developer).

A client is built once per cluster and kept (describing a cluster costs a GKE API call); a
failed describe is not kept, so the next scaling tick tries again. `{api}` is
https://container.googleapis.com, or the `api_url` given, or $SKYPANDA_GKE_API (tests).

Without `cluster`, `context` names a kubeconfig context (a laptop); with neither, in-cluster
credentials when running in a pod, else the kubeconfig's current context.

Every failure is a skypanda error naming the queue and the cluster: InvalidInput for what the
queue or the deployment must fix (a malformed cluster name, no Google credentials, no
kubeconfig), BackendUnavailable for what the GKE API or the cluster answered (retryable for
throttling, server errors and a cluster still being created).
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import google.auth
import requests
from google.auth.credentials import Credentials
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.auth.transport.requests import AuthorizedSession, Request
from kubernetes import client as k8s

from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import GKE_CLUSTER_PATTERN, GkeLauncherSpec

__all__ = [
    "DEFAULT_GKE_API", "SCOPES", "ClusterName", "GkeAccess", "load_api_client", "shared_access",
]  # fmt: skip

DEFAULT_GKE_API = "https://container.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DESCRIBE_TIMEOUT_S = 30.0

_CLUSTER = re.compile(GKE_CLUSTER_PATTERN)


@dataclass(frozen=True)
class ClusterName:
    """A GKE cluster's full resource name, validated."""

    project: str
    location: str
    cluster: str

    @classmethod
    def parse(cls, name: str, *, queue: str) -> ClusterName:
        """Raises:
        InvalidInput: `name` is not `projects/P/locations/L/clusters/C`."""
        m = _CLUSTER.match(name)
        if m is None:
            raise InvalidInput(
                f"queue {queue}: launcher.cluster {name!r} is not "
                "'projects/PROJECT/locations/LOCATION/clusters/CLUSTER'",
                queue=queue,
                cluster=name,
            )
        return cls(m["project"], m["location"], m["cluster"])

    def __str__(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.cluster}"


class GkeAccess:
    """Kubernetes ApiClients for queues' clusters, built once per cluster (see module doc).

    `credentials`: Google credentials to describe clusters and to authenticate to them; None:
    `google.auth.default()` with the cloud-platform scope, looked up on first need (a queue
    reached through a kubeconfig needs none). `api_url`: the GKE API's base URL.
    """

    def __init__(self, credentials: Credentials | None = None, *, api_url: str | None = None):
        self._credentials = credentials
        self.api_url = (api_url or os.environ.get("SKYPANDA_GKE_API") or DEFAULT_GKE_API).rstrip(
            "/"
        )
        self._clients: dict[str, k8s.ApiClient] = {}
        self._lock = threading.Lock()  # the cache and the credentials' refresh

    def client_for(self, queue: str, spec: GkeLauncherSpec) -> k8s.ApiClient:
        """The ApiClient for a queue's cluster: `spec.cluster` through the GKE API, else the
        kubeconfig (`spec.context`) or in-cluster credentials.

        Raises:
            InvalidInput: a malformed cluster name, no Google credentials, no kubeconfig.
            BackendUnavailable: the GKE API failed or described an unusable cluster.
        """
        if spec.cluster is None:
            return load_api_client(spec.context, queue=queue)
        name = str(ClusterName.parse(spec.cluster, queue=queue))
        with self._lock:
            cached = self._clients.get(name)
        if cached is not None:
            return cached
        made = self._build(name, queue)
        with self._lock:  # two builders at once: keep the first, both work
            return self._clients.setdefault(name, made)

    # -- building a client -------------------------------------------------------------------

    def _creds(self, where: str) -> Credentials:
        if self._credentials is None:
            try:
                creds, _project = google.auth.default(scopes=SCOPES)
            except DefaultCredentialsError as e:
                raise InvalidInput(f"{where}: no Google credentials: {e}") from e
            self._credentials = creds
        return self._credentials

    def _build(self, cluster: str, queue: str) -> k8s.ApiClient:
        where = f"queue {queue}: GKE cluster {cluster}"
        described = self._describe(cluster, where)
        endpoint = described.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            err = BackendUnavailable(
                f"{where}: the GKE API gave no endpoint (cluster status "
                f"{described.get('status', 'unknown')})",
                queue=queue,
                cluster=cluster,
            )
            err.retryable = described.get("status") in ("PROVISIONING", "RECONCILING")
            raise err
        auth = described.get("masterAuth")
        ca_b64 = auth.get("clusterCaCertificate") if isinstance(auth, dict) else None
        cfg = k8s.Configuration(host=f"https://{endpoint}")
        cfg.ssl_ca_cert = _ca_file(ca_b64, where)
        cfg.verify_ssl = True
        hook = self._bearer_hook(where)
        cfg.refresh_api_key_hook = hook  # type: ignore[assignment]  # typed None upstream
        hook(cfg)  # a first token now: auth errors show at build time
        return k8s.ApiClient(cfg)

    def _describe(self, cluster: str, where: str) -> dict[str, Any]:
        """The cluster resource from the GKE API (projects.locations.clusters.get)."""
        session = AuthorizedSession(self._creds(where))  # type: ignore[no-untyped-call]
        url = f"{self.api_url}/v1/{cluster}"
        try:
            response = session.get(url, timeout=DESCRIBE_TIMEOUT_S)
        except GoogleAuthError as e:  # the session refreshes the token first
            raise _auth_error(where, e) from e
        except requests.RequestException as e:
            raise BackendUnavailable(f"{where}: cannot describe it: {e}") from e
        finally:
            session.close()  # type: ignore[no-untyped-call]
        if response.status_code >= 400:
            err = BackendUnavailable(
                f"{where}: describe failed: {response.status_code} {_google_message(response)}",
                status=response.status_code,
            )
            err.retryable = response.status_code == 429 or response.status_code >= 500
            raise err
        try:
            body = response.json()
        except ValueError as e:
            raise BackendUnavailable(f"{where}: describe answered no JSON: {e}") from e
        if not isinstance(body, dict):
            raise BackendUnavailable(f"{where}: describe answered {type(body).__name__}")
        return body

    def _bearer_hook(self, where: str) -> Callable[[k8s.Configuration], None]:
        """Configuration.refresh_api_key_hook: called before every request; refreshes the
        access token when google-auth says it is expired or about to (its `valid`)."""

        def refresh(cfg: k8s.Configuration) -> None:
            with self._lock:
                creds = self._creds(where)
                if not creds.valid:
                    try:
                        creds.refresh(Request())  # type: ignore[no-untyped-call]
                    except GoogleAuthError as e:
                        raise _auth_error(where, e) from e
                token = creds.token
            if not token:
                raise BackendUnavailable(f"{where}: the credentials gave no access token")
            cfg.api_key["authorization"] = token
            cfg.api_key_prefix["authorization"] = "Bearer"

        return refresh


@functools.cache
def shared_access(api_url: str | None = None) -> GkeAccess:
    """The process's GkeAccess for a GKE API URL (None: $SKYPANDA_GKE_API or the real one), on
    the default credentials: what a function instance uses, so that its clients are built once
    per cluster however many times its launchers are made."""
    return GkeAccess(api_url=api_url)


def _auth_error(where: str, e: GoogleAuthError) -> BackendUnavailable:
    """No access token: retryable when google-auth says so (a metadata server's hiccup), not
    for revoked or disabled credentials."""
    err = BackendUnavailable(f"{where}: cannot get an access token: {e}")
    err.retryable = bool(getattr(e, "retryable", False))
    return err


def _google_message(response: requests.Response) -> str:
    """The `error.message` of a Google API error body, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or response.reason or "")[:300]


def _ca_file(ca_b64: object, where: str) -> str:
    """Write the cluster's CA (base64 PEM) to a file the kubernetes client can read; check
    that it is a certificate first (a bad one would fail every call with a TLS error).

    Raises:
        BackendUnavailable: no CA, not base64, not a PEM certificate.
    """
    if not isinstance(ca_b64, str) or not ca_b64:
        err = BackendUnavailable(f"{where}: the GKE API gave no masterAuth.clusterCaCertificate")
        err.retryable = False
        raise err
    try:
        pem = base64.b64decode(ca_b64, validate=True).decode("ascii")
        ssl.create_default_context(cadata=pem)
    except (binascii.Error, UnicodeDecodeError, ssl.SSLError, ValueError) as e:
        err = BackendUnavailable(f"{where}: bad cluster CA certificate: {e}")
        err.retryable = False
        raise err from e
    with tempfile.NamedTemporaryFile(
        "w", prefix="skypanda-gke-ca-", suffix=".pem", delete=False
    ) as f:
        f.write(pem)
    return f.name


def load_api_client(context: str | None = None, *, queue: str = "?") -> k8s.ApiClient:
    """An ApiClient from in-cluster credentials (running in a pod, no `context` named) or the
    kubeconfig (its `context`, or the current one).

    Raises:
        InvalidInput: neither is there (e.g. a Cloud Function: name the queue's cluster).
    """
    from kubernetes import config

    if context is None:
        try:
            cfg = k8s.Configuration()
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(cfg)
        except config.ConfigException:
            pass
    try:
        api: k8s.ApiClient = config.new_client_from_config(context=context)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError, ValueError) as e:
        which = f"kubeconfig context {context!r}" if context else "a kubeconfig"
        raise InvalidInput(
            f"queue {queue}: cannot reach Kubernetes through {which}: {e} (on Google Cloud, "
            "name the cluster: launcher.cluster: projects/P/locations/L/clusters/C)",
            queue=queue,
        ) from e
    return api
