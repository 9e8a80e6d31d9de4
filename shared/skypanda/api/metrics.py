"""`GET /metrics`: Prometheus metrics (prometheus-client's text format), for admins and the
monitor role (a scraper's credential: `skypanda users add prometheus --role monitor`).

Two kinds, by where the truth is:

- what the store holds is read from it at scrape time (`ports.metrics.MetricsReader`: a
  rollup and indexes, no walk over the jobs): `skypanda_jobs_ended{status,error_code}`,
  `skypanda_queue_activated_jobs{queue}` (queue depth), `skypanda_pilots{queue,status}`.
  Restarting the server loses nothing, and two servers on one store agree;
- what happens, measured where it happens in this process: `skypanda_dispatch_latency_seconds`
  (activated -> dispatched to a pilot, by queue), `skypanda_job_duration_seconds` and
  `skypanda_task_duration_seconds` (by final status). They are observed from the events
  `handlers.observe` records (`wire.logs.announce`, whatever the log level), the same records
  whose log lines Cloud Logging's log-based metrics count on Google Cloud
  (infra/terraform/monitoring.tf): one definition of each metric locally and in the cloud,
  and no metrics plumbing in the handlers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from flask import Flask, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skypanda.handlers.services import Services
from skypanda.ports.metrics import MetricsReader
from skypanda.wire import logs
from skypanda.wire.logs import LogEvent

__all__ = ["DISPATCH_LATENCY", "JOB_DURATION", "TASK_DURATION", "StoreCollector", "routes"]

_SECONDS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86400)
_LONG = (1, 10, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 604800)

DISPATCH_LATENCY = Histogram(
    "skypanda_dispatch_latency_seconds",
    "From a job attempt's activation (at submission, by its parents' ends, a retry or a "
    "requeue) to its dispatch to a pilot, by queue.",
    ["queue"],
    buckets=_SECONDS,
    registry=None,
)
JOB_DURATION = Histogram(
    "skypanda_job_duration_seconds",
    "Job attempts from start to end, by the status they ended with.",
    ["status"],
    buckets=_SECONDS,
    registry=None,
)
TASK_DURATION = Histogram(
    "skypanda_task_duration_seconds",
    "Tasks from submission to end, by final status.",
    ["status"],
    buckets=_LONG,
    registry=None,
)
NO_CODE = "none"
"""The `error_code` label of jobs that ended without one."""


class StoreCollector(Collector):
    """The store's counts as gauges, read at each scrape."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        reader: MetricsReader = self.svc.store
        counts = reader.metric_counts()
        ends = GaugeMetricFamily(
            "skypanda_jobs_ended",
            "Jobs in a final state, by status and error code (read from the store).",
            labels=["status", "error_code"],
        )
        for e in counts.job_ends:
            code = NO_CODE if e.error_code is None else str(e.error_code)
            ends.add_metric([str(e.status), code], e.count)
        depth = GaugeMetricFamily(
            "skypanda_queue_activated_jobs",
            "Queue depth: activated jobs waiting for a pilot, by queue (read from the store).",
            labels=["queue"],
        )
        for queue, n in sorted(counts.activated.items()):
            depth.add_metric([queue], n)
        pilots = GaugeMetricFamily(
            "skypanda_pilots",
            "Pilots by queue and state (read from the store).",
            labels=["queue", "status"],
        )
        for p in counts.pilots:
            pilots.add_metric([p.queue, str(p.status)], p.count)
        yield from (ends, depth, pilots)


def _observe(event: str, labels: Mapping[str, str], fields: Mapping[str, Any]) -> None:
    """Observe the histograms from the events this process records (`wire.logs.announce`)."""
    if event == LogEvent.JOB_DISPATCHED:
        DISPATCH_LATENCY.labels(labels.get("queue", "")).observe(fields["latency_s"])
    elif event == LogEvent.JOB_ENDED and fields.get("duration_s") is not None:
        JOB_DURATION.labels(fields["status"]).observe(fields["duration_s"])
    elif event == LogEvent.TASK_ENDED:
        TASK_DURATION.labels(fields["status"]).observe(fields["duration_s"])


def routes(app: Flask, svc: Services) -> None:
    registry = CollectorRegistry(auto_describe=False)  # nothing is read before a scrape
    registry.register(StoreCollector(svc))
    for histogram in (DISPATCH_LATENCY, JOB_DURATION, TASK_DURATION):
        registry.register(histogram)
    logs.listen(_observe)  # once per process: listen() keeps one of each

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
