"""Where a queue's pilots run: the launcher settings of a queue definition (validated).

kind: local      pilots are local processes (the embedded default)
kind: cloudrun   a Cloud Run job per queue (`run_v2`): executions with task counts and
                 per-execution overrides (environment, timeout, resources for push mode)
kind: gke        a Kubernetes batch/v1 Job per pilot, on GKE or any cluster
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

_NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"  # DNS-1123 label: Cloud Run jobs, k8s names


class _Spec(BaseModel):
    # strict: no "3" for 3, no true for 1 (a queue file says what it means)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_Label = Annotated[str, Field(min_length=1, max_length=317)]  # a k8s label key: [prefix/]name


class LocalLauncherSpec(_Spec):
    kind: Literal["local"] = "local"


class CloudRunLauncherSpec(_Spec):
    """A Cloud Run job (one per queue) whose tasks are pilots."""

    kind: Literal["cloudrun"]
    project: str = Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    # A Google Cloud region: area-direction and a number from 1 (us-central1, europe-west10,
    # northamerica-northeast2, me-central1; a sovereign cloud's u-france-east1). Not a zone
    # (us-central1-a), not "global".
    region: str = Field(pattern=r"^[a-z]+(-[a-z]+){1,2}[1-9][0-9]?$")
    job: str = Field(pattern=_NAME)
    image: str = Field(min_length=1)
    service_account: str | None = None
    # Ignored (deprecated): pilots get a launch credential of their own, not a Secret's token.
    token_secret: str = "skypanda-pilot-token"
    max_retries: int = Field(default=0, ge=0, le=10)
    timeout_s: int = Field(default=3600, ge=60, le=86_400)


class Toleration(_Spec):
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


GKE_CLUSTER_PATTERN = (
    r"^projects/(?P<project>[a-z][-a-z0-9]{4,28}[a-z0-9]|[0-9]+)"
    r"/locations/(?P<location>[a-z]+(-[a-z]+){1,2}[0-9]+(-[a-z])?)"
    r"/clusters/(?P<cluster>[a-z]([-a-z0-9]{0,38}[a-z0-9])?)$"
)
"""A GKE cluster's resource name: project id (6-30, a letter first) or number; region or zone;
cluster name (1-40, a letter first)."""


class GkeLauncherSpec(_Spec):
    """A Kubernetes batch/v1 Job per pilot."""

    kind: Literal["gke"]
    namespace: str = Field(default="skypanda", pattern=_NAME)
    image: str = Field(min_length=1)
    # The cluster, reached through the GKE API with the scaler's own Google credentials
    # (adapters.gcp.gke_access); else `context` or in-cluster credentials.
    cluster: str | None = Field(default=None, pattern=GKE_CLUSTER_PATTERN)
    context: str | None = None  # kubeconfig context; None: in-cluster or the current one
    spot: bool = True  # spot/preemptible nodes: node selector and toleration
    node_selector: dict[_Label, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=64
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=64)
    service_account: str | None = None
    # Ignored (deprecated): pilots get a launch credential of their own, not a Secret's token.
    token_secret: str = Field(default="skypanda-pilot-token", pattern=_NAME)
    ttl_after_finished_s: int = Field(default=300, ge=0, le=604_800)


LauncherSpec = Annotated[
    LocalLauncherSpec | CloudRunLauncherSpec | GkeLauncherSpec, Field(discriminator="kind")
]
