"""GKE (any Kubernetes) pilots: one batch/v1 Job per pilot, through the `kubernetes` client.

The manifest, for a queue whose launcher is `kind: gke` (skypanda.domain.launchers):

    metadata   name `pilot-<pilot id made DNS-1123>` (a short hash of the id is appended when the
               id had to be changed, so two ids never share a name); labels `app=skypanda-pilot`,
               `skypanda/queue`, `skypanda/pilot` (label-safe forms) and the exact pilot id in the
               annotation `skypanda/pilot-id` (label values cannot hold every pilot id)
    spec       backoffLimit 0 (a failed pilot is not restarted by Kubernetes: the scaler decides),
               ttlSecondsAfterFinished (finished Jobs are garbage-collected by the cluster)
    pod        restartPolicy Never; annotation `cluster-autoscaler.kubernetes.io/safe-to-evict:
               "false"`: the autoscaler must not drain a node to consolidate while a pilot runs
               payloads there (spot preemption still happens); terminationGracePeriodSeconds
               15 on spot nodes (GKE gives a pod on a reclaimed spot VM at most 15 s between
               SIGTERM and SIGKILL, whatever the pod asks), 30 otherwise; serviceAccountName;
               spot node selector and toleration (`cloud.google.com/gke-spot`) plus the
               queue's own
    container  the queue's image running `python3 -m skypanda pilot --memory-mb M --cores C`
               (the flags matter: without them the pilot would offer the node's memory, not the
               container's); SKYPANDA_SERVER, SKYPANDA_QUEUE, SKYPANDA_PILOT_ID, SKYPANDA_TOKEN
               (the pilot's launch credential, see below), SKYPANDA_STOP_GRACE (the grace in
               seconds: on SIGTERM the pilot kills its payloads, reports its jobs and ends
               within it), SKYPANDA_PUSH_JOB in push mode;
               requests = limits (Guaranteed QoS: a pilot is not the first to be OOM-killed or
               throttled) = the queue's pilot resources, or the job's exact memory and cores in
               push mode

SKYPANDA_TOKEN is the pilot's own launch credential (`credential_for(pilot_id)`, given by the
runtime; adapters.pilot_credentials), a value in the pod spec, never the deployment's token nor
a shared Secret: it may only register that one pilot id, once, and it expires (an hour by
default: enough for a pod pending while the cluster scales up). A payload that reads it from the
pilot's environment gains nothing: the pilot spent it registering before it ran any payload, and
from then on acts with a credential of its own, kept in memory. Whoever may read the Job or its
pod in the namespace sees it too, and could register as that pilot only if it did so before
the pilot itself. A retried launch meeting an existing Job keeps that Job (and its credential).

An image without skypanda installed can run the single-file pilot instead: pass
`command=["sh", "-c", 'curl -fsS "$SKYPANDA_SERVER/v1/pilot.pyz" -o /tmp/pilot.pyz && exec
python3 /tmp/pilot.pyz "$@"', "pilot"]` (the memory and cores flags are appended as arguments).

The ApiClient comes from the runtime (adapters.gcp.gke_access: a GKE cluster described through
the GKE API, or a kubeconfig). Errors are skypanda's: the API server's refusals and an
unreachable API server are BackendUnavailable (retryable for throttling, server errors and the
network).

A pilot whose Job vanished (deleted by hand, or by the TTL after it finished) is still reported by
`list`, as not alive with no exit code, as long as this launcher launched it and was not told to
`forget` it: the scaler then retires its record and requeues its jobs. A launcher that restarted
(the scaler is a function) no longer remembers; the scaler's heartbeat timeout covers those.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.launchers import GkeLauncherSpec
from skypanda.domain.models import Job, Queue, Resources
from skypanda.ports import LaunchedPilot

__all__ = ["APP_LABEL", "DEFAULT_COMMAND", "GkeLauncher", "grace_s", "job_name", "spec_of"]

log = logging.getLogger(__name__)

APP_LABEL = "skypanda-pilot"
DEFAULT_COMMAND: tuple[str, ...] = ("python3", "-m", "skypanda", "pilot")
SPOT_KEY = "cloud.google.com/gke-spot"
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
PILOT_ID_ANNOTATION = "skypanda/pilot-id"
SPOT_GRACE_S = 15
"""What GKE gives a pod on a reclaimed spot VM between SIGTERM and SIGKILL, at most."""
DEFAULT_GRACE_S = 30
"""Kubernetes' default terminationGracePeriodSeconds (a deleted Job, a drained node)."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def job_name(pilot_id: str) -> str:
    """The Job's name for a pilot: a DNS-1123 label of at most 63 characters.

    `pilot-<id>` when the id already fits; otherwise the id lowercased, with other characters
    made `-`, shortened, and a hash of the exact id appended (so `P1` and `p1` differ)."""
    plain = f"pilot-{pilot_id}"
    if len(plain) <= 63 and _DNS_LABEL.match(plain):
        return plain
    base = re.sub(r"[^a-z0-9]+", "-", pilot_id.lower())[:44].strip("-")
    return f"pilot-{base}-{_digest(pilot_id)}" if base else f"pilot-{_digest(pilot_id)}"


def _label_value(value: str) -> str:
    """`value` when Kubernetes accepts it as a label value, else a safe form with a hash."""
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:54].strip("-_.")
    return f"{base}-{_digest(value)}" if base else _digest(value)


def _resources(size: Resources, queue: Queue) -> k8s.V1ResourceRequirements:
    """requests = limits: memory in Mi, cpu in cores; the queue's scratch disk and GPUs."""
    amounts = {"memory": f"{size.memory_mb}Mi", "cpu": str(size.cores)}
    if queue.disk_gb is not None:
        amounts["ephemeral-storage"] = f"{int(queue.disk_gb * 1024)}Mi"
    if queue.gpus:
        amounts["nvidia.com/gpu"] = str(queue.gpus)
    return k8s.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


def _placement(spec: GkeLauncherSpec) -> tuple[dict[str, str], list[k8s.V1Toleration]]:
    """Node selector and tolerations: spot first, then the queue's own (which may override)."""
    selector: dict[str, str] = {SPOT_KEY: "true"} if spec.spot else {}
    selector.update(spec.node_selector)
    tolerations = []
    if spec.spot:
        tolerations.append(
            k8s.V1Toleration(key=SPOT_KEY, operator="Equal", value="true", effect="NoSchedule")
        )
    for t in spec.tolerations:
        tolerations.append(
            k8s.V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        )
    return selector, tolerations


def grace_s(spec: GkeLauncherSpec) -> int:
    """The pod's terminationGracePeriodSeconds: no more than a spot VM's reclaim gives (a
    longer one would be cut short there, and the pilot would plan its stop on time it has
    not got)."""
    return SPOT_GRACE_S if spec.spot else DEFAULT_GRACE_S


def spec_of(queue: Queue) -> GkeLauncherSpec:
    """The queue's GKE launcher settings.

    Raises:
        InvalidInput: the queue's launcher is not `kind: gke`.
    """
    if not isinstance(queue.launcher, GkeLauncherSpec):
        raise InvalidInput(
            f"queue {queue.name!r} has launcher kind {queue.launcher.kind!r}, not 'gke'",
            queue=queue.name,
        )
    return queue.launcher


def _backend_error(
    action: str, e: ApiException | urllib3.exceptions.HTTPError
) -> BackendUnavailable:
    """A Kubernetes API error; only the network, throttling and server errors are worth
    retrying."""
    if not isinstance(e, ApiException):  # no answer: refused, timed out, TLS
        return BackendUnavailable(f"kubernetes: {action} failed: {e}")
    err = BackendUnavailable(
        f"kubernetes: {action} failed: {e.status} {e.reason}", status=e.status, body=e.body
    )
    err.retryable = e.status in (0, 429) or (e.status or 0) >= 500
    return err


def _outcome(job: k8s.V1Job) -> tuple[bool, int | None]:
    """(alive, exit code) of a Job: its Complete / Failed condition, else its pod counts.

    The Job does not carry the container's exit code: Complete maps to 0 and Failed to 1."""
    status = job.status
    for cond in (status.conditions or []) if status else []:
        if cond.status == "True" and cond.type == "Complete":
            return False, 0
        if cond.status == "True" and cond.type == "Failed":
            return False, 1
    if status is not None and status.succeeded:
        return False, 0
    if status is not None and status.failed:
        return False, 1
    return True, None


class GkeLauncher:
    """Launcher port on Kubernetes batch/v1 Jobs (GKE Autopilot/Standard or any cluster).

    `api_client` is a `kubernetes.client.ApiClient` (see adapters.gcp.gke_access; tests point
    one at a local server). `credential_for(pilot_id)` makes each pilot's launch credential.
    `namespaces` are listed besides those this launcher launched into, so pilots launched
    before a restart are seen once they finish.
    """

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        server_url: str,
        credential_for: Callable[[str], str],
        namespaces: Iterable[str] = (),
        command: Sequence[str] = DEFAULT_COMMAND,
    ) -> None:
        self._batch = k8s.BatchV1Api(api_client)
        self.server_url = server_url
        self._credential_for = credential_for
        self._command = list(command)
        self._namespaces = set(namespaces)
        self._launched: dict[str, str] = {}  # pilot id -> "namespace/name"
        self._lock = threading.Lock()

    def manifest(self, queue: Queue, pilot_id: str, job: Job | None = None) -> k8s.V1Job:
        """The batch/v1 Job that runs one pilot (see the module docstring for why each field),
        holding a launch credential made for it now.

        Raises:
            InvalidInput: the queue's launcher is not `kind: gke`.
        """
        spec = spec_of(queue)
        size = job.resources if job is not None else queue.pilot_resources
        name = job_name(pilot_id)
        labels = {
            "app": APP_LABEL,
            "skypanda/queue": _label_value(queue.name),
            "skypanda/pilot": _label_value(pilot_id),
        }
        env = [
            k8s.V1EnvVar(name="SKYPANDA_SERVER", value=self.server_url),
            k8s.V1EnvVar(name="SKYPANDA_QUEUE", value=queue.name),
            k8s.V1EnvVar(name="SKYPANDA_PILOT_ID", value=pilot_id),
            k8s.V1EnvVar(name="SKYPANDA_TOKEN", value=self._credential_for(pilot_id)),
            k8s.V1EnvVar(name="SKYPANDA_STOP_GRACE", value=str(grace_s(spec))),
        ]
        if job is not None:
            env.append(k8s.V1EnvVar(name="SKYPANDA_PUSH_JOB", value=job.id))
        container = k8s.V1Container(
            name="pilot",
            image=spec.image,
            command=self._command,
            args=["--memory-mb", str(size.memory_mb), "--cores", str(size.cores)],
            env=env,
            resources=_resources(size, queue),
        )
        selector, tolerations = _placement(spec)
        pod = k8s.V1PodSpec(
            containers=[container],
            restart_policy="Never",
            service_account_name=spec.service_account,
            node_selector=selector or None,
            tolerations=tolerations or None,
            termination_grace_period_seconds=grace_s(spec),
        )
        annotations = {PILOT_ID_ANNOTATION: pilot_id}
        return k8s.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=k8s.V1ObjectMeta(
                name=name, namespace=spec.namespace, labels=labels, annotations=annotations
            ),
            spec=k8s.V1JobSpec(
                backoff_limit=0,
                ttl_seconds_after_finished=spec.ttl_after_finished_s,
                template=k8s.V1PodTemplateSpec(
                    metadata=k8s.V1ObjectMeta(
                        labels=labels, annotations={**annotations, SAFE_TO_EVICT: "false"}
                    ),
                    spec=pod,
                ),
            ),
        )

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        """Create the pilot's Job; return `namespace/name`.

        Idempotent: a Job that already exists under that name (a retried launch) is taken as
        launched.

        Raises:
            InvalidInput: the queue's launcher is not `kind: gke`.
            BackendUnavailable: the API server refused or failed.
        """
        manifest = self.manifest(queue, pilot_id, job)
        ns, name = spec_of(queue).namespace, job_name(pilot_id)
        try:
            self._batch.create_namespaced_job(ns, manifest)
        except urllib3.exceptions.HTTPError as e:
            raise _backend_error(f"create job {ns}/{name}", e) from e
        except ApiException as e:
            if e.status != 409:
                raise _backend_error(f"create job {ns}/{name}", e) from e
            log.info("pilot %s: job %s/%s already exists", pilot_id, ns, name)
        ref = f"{ns}/{name}"
        with self._lock:
            self._launched[pilot_id] = ref
            self._namespaces.add(ns)
        log.info("launched pilot %s on queue %s as job %s", pilot_id, queue.name, ref)
        return ref

    def list(self) -> list[LaunchedPilot]:
        """Every pilot Job in the known namespaces, and every remembered pilot whose Job is gone.

        Raises:
            BackendUnavailable: the API server failed.
        """
        with self._lock:
            namespaces = sorted(self._namespaces)
            launched = dict(self._launched)
        seen: dict[str, LaunchedPilot] = {}
        for ns in namespaces:
            try:
                jobs = self._batch.list_namespaced_job(ns, label_selector=f"app={APP_LABEL}")
            except (ApiException, urllib3.exceptions.HTTPError) as e:
                raise _backend_error(f"list jobs in {ns}", e) from e
            for item in jobs.items:
                meta = item.metadata or k8s.V1ObjectMeta()
                pilot_id = (meta.annotations or {}).get(PILOT_ID_ANNOTATION)
                if pilot_id is None:  # not made by this launcher
                    continue
                alive, code = _outcome(item)
                ref = f"{meta.namespace or ns}/{meta.name}"
                seen[pilot_id] = LaunchedPilot(pilot_id, ref, alive, code)
        for pilot_id, ref in launched.items():
            if pilot_id not in seen:  # deleted, or garbage-collected after its TTL
                seen[pilot_id] = LaunchedPilot(pilot_id, ref, False, None)
        return list(seen.values())

    def forget(self, pilot_id: str) -> None:
        """Stop reporting a pilot whose Job vanished (the scaler has reconciled it)."""
        with self._lock:
            self._launched.pop(pilot_id, None)

    def stop(self, pilot_id: str) -> None:
        """Delete the pilot's Job and, first, its pod (Foreground): the pod gets SIGTERM and its
        grace period, in which the pilot reports its jobs as preempted. A Job already gone is
        not an error.

        Raises:
            BackendUnavailable: the API server failed.
        """
        with self._lock:
            ref = self._launched.get(pilot_id)
            # not launched by this process (it restarted): try its name in every known namespace
            refs = [ref] if ref else [f"{ns}/{job_name(pilot_id)}" for ns in self._namespaces]
        for each in refs:
            ns, name = each.split("/", 1)
            try:
                self._batch.delete_namespaced_job(name, ns, propagation_policy="Foreground")
            except urllib3.exceptions.HTTPError as e:
                raise _backend_error(f"delete job {each}", e) from e
            except ApiException as e:
                if e.status != 404:
                    raise _backend_error(f"delete job {each}", e) from e
