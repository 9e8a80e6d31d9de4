"""infra/terraform/monitoring.tf against the code: the log-based metrics count and measure the
lines skypanda really writes (`skypanda.wire.logs`), the alerts watch what exists.

Each log-based metric filters on one `jsonPayload.event` and extracts fields of its payload and
labels of its entry; the code names them once (`LogEvent`, `FIELDS`, `LABELS`), and the same
constants build the lines (`wire.logs.event`, which refuses a field `FIELDS` does not list).
So a renamed event or field fails here instead of leaving a chart empty in the cloud. The
`*_notices_*` tests feed a broken copy to show the checks can fail.
"""

from __future__ import annotations

import re
from typing import Any

from skypanda.runtime import deployment
from skypanda.wire.logs import FIELDS, LABELS, LogEvent
from tests.infra.test_terraform import Terraform, block, expr

MONITORING = "monitoring.tf"
_EXTRACT = re.compile(r"^EXTRACT\((jsonPayload|labels)\.(\w+)\)$")
EVENTS = {v for k, v in vars(LogEvent).items() if not k.startswith("_")}


def log_metric_problems(tf: Terraform) -> list[str]:
    """Every log-based metric names an event the code emits, and extracts only what that
    event's lines carry; every event is counted by some metric."""
    problems: list[str] = []
    metrics: dict[str, Any] = tf.locals.get("log_metrics", {})
    for name, m in metrics.items():
        event = m.get("event")
        if event not in FIELDS:
            problems.append(f"{name}: event {event!r} is no LogEvent the code emits")
            continue
        extractors = [*(m.get("labels") or {}).values(), *([m["value"]] if m.get("value") else [])]
        for extractor in extractors:
            found = _EXTRACT.match(extractor)
            if found is None:
                problems.append(f"{name}: {extractor!r} is not EXTRACT(jsonPayload.x|labels.x)")
            elif found.group(1) == "jsonPayload" and found.group(2) not in FIELDS[event]:
                problems.append(f"{name}: {event} lines carry no field {found.group(2)!r}")
            elif found.group(1) == "labels" and found.group(2) not in LABELS:
                problems.append(f"{name}: no line carries the label {found.group(2)!r}")
    problems += [
        f"no metric counts the {e} lines"
        for e in sorted(EVENTS - {m.get("event") for m in metrics.values()})
    ]
    body = tf.resources.get(("google_logging_metric", "event"), {})
    if expr(body.get("for_each")) != "local.log_metrics":
        problems.append("google_logging_metric.event does not iterate over local.log_metrics")
    if 'jsonPayload.event=\\"${each.value.event}\\"' not in body.get("filter", ""):
        problems.append("google_logging_metric.event's filter does not match jsonPayload.event")
    return problems


def test_log_metrics_count_the_lines_the_code_writes() -> None:
    assert log_metric_problems(Terraform.load()) == []


def test_log_metric_checker_notices_a_renamed_event_field_or_label() -> None:
    tf = Terraform.load()
    renamed = tf.edited(MONITORING, 'event       = "job.dispatched"', 'event       = "job.running"')
    assert "dispatch_latency: event 'job.running' is no LogEvent the code emits" in (
        log_metric_problems(renamed)
    )
    field = tf.edited(MONITORING, "EXTRACT(jsonPayload.latency_s)", "EXTRACT(jsonPayload.wait_s)")
    assert log_metric_problems(field) == [
        "dispatch_latency: job.dispatched lines carry no field 'wait_s'"
    ]
    label = tf.edited(
        MONITORING, 'owner = "EXTRACT(labels.owner)"', 'owner = "EXTRACT(labels.user)"'
    )
    assert log_metric_problems(label) == ["tasks_submitted: no line carries the label 'user'"]


def test_every_event_a_metric_reads_is_built_by_the_code_with_those_fields() -> None:
    # The lines are built with wire.logs.event, which accepts exactly FIELDS[event]: a metric
    # reading a field the code does not set would be refused there.
    for event, fields in FIELDS.items():
        assert event in EVENTS
        assert set(fields) <= {"status", "error_code", "duration_s", "latency_s", "launch",
                               "activated", "kind"}  # fmt: skip


def test_the_dead_letter_alert_watches_the_dead_letter_topics_subscriptions() -> None:
    tf, manifest = Terraform.load(), deployment.manifest()
    derived = expr(tf.locals["dead_letter_subscriptions"])
    assert "local.subscriptions" in derived and "local.manifest.dead_letter_topic" in derived
    # the manifest has such subscriptions (the hold subscription)
    holds = [
        s["name"] for s in manifest["subscriptions"] if s["topic"] == manifest["dead_letter_topic"]
    ]
    assert holds
    policy = tf.resources[("google_monitoring_alert_policy", "dead_letters")]
    condition = block(policy, "conditions", "condition_threshold")
    assert "num_undelivered_messages" in condition["filter"]
    assert "local.dead_letter_subscriptions" in condition["filter"]


def test_the_alerts_exist_and_notify_the_channels_given() -> None:
    tf = Terraform.load()
    policies = tf.of_type("google_monitoring_alert_policy")
    assert set(policies) == {"stuck", "pilots_failing", "dead_letters", "error_rate"}
    for name, policy in policies.items():
        assert expr(policy["notification_channels"]) == "var.alert_notification_channels", name
        assert block(policy, "documentation")["content"], name
    # the stuck queue's query reads two of the metrics declared above
    query = block(policies["stuck"], "conditions", "condition_prometheus_query_language")["query"]
    assert "local.promql.queue_depth" in query and "local.promql.dispatch_latency" in query
    assert {"queue_depth", "dispatch_latency", "pilots_ended"} <= set(tf.locals["log_metrics"])
    failing = block(policies["pilots_failing"], "conditions", "condition_threshold")["filter"]
    assert "local.metric_type.pilots_ended" in failing
