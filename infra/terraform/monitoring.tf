# Cloud Monitoring: metrics made from skypanda's structured log lines, a dashboard and alerts.
#
# The functions and the pilots write one JSON entry per line (skypanda.wire.logs); the lines
# the monitoring is built on name an `event` (wire.logs.LogEvent) and carry its fields in
# jsonPayload and its labels (task, job, pilot, queue, owner, workflow) in the entry's labels.
# The log-based metrics below count and measure them; tests/infra/test_terraform.py checks
# that every filter names an event the code emits and extracts only the fields and labels that
# event carries. Locally the same lines feed the API server's Prometheus histograms
# (GET /metrics, skypanda.api.metrics).
#
# With a prefix, a metric counts the lines of this deployment's functions and pilots only
# (their service and job names start with the prefix); without one, of the whole project.

locals {
  # Metric names: flat (PromQL names them logging_googleapis_com:user_<name>).
  metric_prefix = "${replace(local.prefix, "-", "_")}skypanda_"

  # Lines of this deployment: its functions (Cloud Run services), its Cloud Run pilot job,
  # and its GKE pilots (pods in its namespace).
  own_lines = local.prefix == "" ? "" : join(" ", [
    "AND (resource.labels.service_name=~\"^${local.prefix}\"",
    "OR resource.labels.job_name=~\"^${local.prefix}\"",
    "OR resource.labels.namespace_name=~\"^${local.prefix}\")",
  ])

  # The dead-letter topic's subscriptions (the `hold` one keeps what is parked for inspection).
  dead_letter_subscriptions = sort([
    for name, s in local.subscriptions : "${local.prefix}${name}" if s.topic == local.manifest.dead_letter_topic
  ])

  # name => what it counts or measures. `event`: the LogEvent; `value`: the field measured
  # (a distribution) or null (a count); `labels`: metric label => extractor.
  log_metrics = {
    tasks_submitted = {
      description = "Tasks submitted, by owner."
      event       = "task.submitted"
      value       = null
      unit        = "1"
      labels      = { owner = "EXTRACT(labels.owner)" }
    }
    task_durations = {
      description = "Tasks from submission to end (s), by final status."
      event       = "task.ended"
      value       = "EXTRACT(jsonPayload.duration_s)"
      unit        = "s"
      labels      = { status = "EXTRACT(jsonPayload.status)" }
    }
    job_ends = {
      description = "Job attempts ended, by status, error code and queue."
      event       = "job.ended"
      value       = null
      unit        = "1"
      labels = {
        status     = "EXTRACT(jsonPayload.status)"
        error_code = "EXTRACT(jsonPayload.error_code)"
        queue      = "EXTRACT(labels.queue)"
      }
    }
    job_durations = {
      description = "Job attempts from dispatch to end (s), by status."
      event       = "job.ended"
      value       = "EXTRACT(jsonPayload.duration_s)"
      unit        = "s"
      labels      = { status = "EXTRACT(jsonPayload.status)" }
    }
    dispatch_latency = {
      description = "From a job attempt's activation (at submission, by its parents' ends, a retry or a requeue) to its dispatch to a pilot (s), by queue."
      event       = "job.dispatched"
      value       = "EXTRACT(jsonPayload.latency_s)"
      unit        = "s"
      labels      = { queue = "EXTRACT(labels.queue)" }
    }
    queue_depth = {
      description = "Activated jobs waiting on a queue, as the scaler saw them at each decision."
      event       = "scaler.decision"
      value       = "EXTRACT(jsonPayload.activated)"
      unit        = "1"
      labels      = { queue = "EXTRACT(labels.queue)" }
    }
    pilots_launched = {
      description = "Pilots launched, by queue."
      event       = "pilot.launched"
      value       = null
      unit        = "1"
      labels      = { queue = "EXTRACT(labels.queue)" }
    }
    pilots_ended = {
      description = "Pilots ended, by queue and status (failed and missed count against a queue's back-off)."
      event       = "pilot.ended"
      value       = null
      unit        = "1"
      labels = {
        queue  = "EXTRACT(labels.queue)"
        status = "EXTRACT(jsonPayload.status)"
      }
    }
    events_dead = {
      description = "Events dead-lettered (poison, or out of tries), by kind."
      event       = "event.dead"
      value       = null
      unit        = "1"
      labels      = { kind = "EXTRACT(jsonPayload.kind)" }
    }
  }
  metric_type = { for name, _ in local.log_metrics : name => "logging.googleapis.com/user/${local.metric_prefix}${name}" }
  error_lines = "logging.googleapis.com/user/${local.metric_prefix}error_lines"
  promql      = { for name, _ in local.log_metrics : name => "logging_googleapis_com:user_${local.metric_prefix}${name}" }
}

resource "google_logging_metric" "event" {
  for_each = local.log_metrics

  name        = "${local.metric_prefix}${each.key}"
  description = each.value.description
  filter      = "jsonPayload.event=\"${each.value.event}\" ${local.own_lines}"

  value_extractor  = each.value.value
  label_extractors = each.value.labels

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = each.value.value == null ? "INT64" : "DISTRIBUTION"
    unit        = each.value.unit

    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }

  dynamic "bucket_options" {
    for_each = each.value.value == null ? [] : [each.value.unit]
    content {
      # 0.1 s (or 1 job) to about a week, doubling.
      exponential_buckets {
        num_finite_buckets = 24
        growth_factor      = 2
        scale              = bucket_options.value == "s" ? 0.1 : 1
      }
    }
  }

  depends_on = [google_project_service.api]
}

# Every line at ERROR or above of this deployment's functions and pilots (skypanda's own and
# the libraries'): the error-rate alert.
resource "google_logging_metric" "errors" {
  name        = "${local.metric_prefix}error_lines"
  description = "Log lines at ERROR or above of skypanda's functions and pilots."
  filter      = "severity>=ERROR AND (resource.type=\"cloud_run_revision\" OR resource.type=\"cloud_run_job\" OR resource.type=\"k8s_container\") ${local.own_lines}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.api]
}

# -- the dashboard ----------------------------------------------------------------------------

locals {
  # One chart: its title and series (a filter, how to align it, how to group it).
  charts = [
    { title = "Job ends per minute, by status", metric = local.metric_type.job_ends, group = ["metric.label.status"], kind = "STACKED_BAR", align = "ALIGN_RATE" },
    { title = "Job ends per minute, by error code", metric = local.metric_type.job_ends, group = ["metric.label.error_code"], kind = "STACKED_BAR", align = "ALIGN_RATE" },
    { title = "Queue depth (activated jobs, p99 of the scaler's readings), by queue", metric = local.metric_type.queue_depth, group = ["metric.label.queue"], kind = "LINE", align = "ALIGN_DELTA", reduce_percentile = "REDUCE_PERCENTILE_99" },
    { title = "Dispatch latency p95 (s), by queue", metric = local.metric_type.dispatch_latency, group = ["metric.label.queue"], kind = "LINE", align = "ALIGN_DELTA", reduce_percentile = "REDUCE_PERCENTILE_95" },
    { title = "Task durations p50 (s), by status", metric = local.metric_type.task_durations, group = ["metric.label.status"], kind = "LINE", align = "ALIGN_DELTA", reduce_percentile = "REDUCE_PERCENTILE_50" },
    { title = "Job durations p95 (s), by status", metric = local.metric_type.job_durations, group = ["metric.label.status"], kind = "LINE", align = "ALIGN_DELTA", reduce_percentile = "REDUCE_PERCENTILE_95" },
    { title = "Pilots launched per minute, by queue", metric = local.metric_type.pilots_launched, group = ["metric.label.queue"], kind = "STACKED_BAR", align = "ALIGN_RATE" },
    { title = "Pilots ended per minute, by status", metric = local.metric_type.pilots_ended, group = ["metric.label.status"], kind = "STACKED_BAR", align = "ALIGN_RATE" },
    { title = "Tasks submitted per minute, by owner", metric = local.metric_type.tasks_submitted, group = ["metric.label.owner"], kind = "STACKED_BAR", align = "ALIGN_RATE" },
    { title = "Events dead-lettered per minute, by kind", metric = local.metric_type.events_dead, group = ["metric.label.kind"], kind = "STACKED_BAR", align = "ALIGN_RATE" },
    { title = "Error lines per minute", metric = local.error_lines, group = [], kind = "LINE", align = "ALIGN_RATE" },
  ]

  dashboard = {
    displayName = "skypanda${local.prefix == "" ? "" : " (${trimsuffix(local.prefix, "-")})"}"
    mosaicLayout = {
      columns = 12
      tiles = concat(
        [
          for i, c in local.charts : {
            xPos   = (i % 2) * 6
            yPos   = floor(i / 2) * 4
            width  = 6
            height = 4
            widget = {
              title = c.title
              xyChart = {
                dataSets = [{
                  plotType = c.kind
                  timeSeriesQuery = {
                    timeSeriesFilter = {
                      filter = "metric.type=\"${c.metric}\""
                      aggregation = {
                        alignmentPeriod    = "60s"
                        perSeriesAligner   = c.align
                        crossSeriesReducer = try(c.reduce_percentile, "REDUCE_SUM")
                        groupByFields      = c.group
                      }
                    }
                  }
                }]
              }
            }
          }
        ],
        [{
          xPos   = 0
          yPos   = ceil(length(local.charts) / 2) * 4
          width  = 12
          height = 4
          widget = {
            title = "Dead letters waiting (undelivered on the dead-letter subscriptions)"
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" resource.type=\"pubsub_subscription\" resource.label.subscription_id=one_of(${join(",", [for s in local.dead_letter_subscriptions : "\"${s}\""])})"
                    aggregation = {
                      alignmentPeriod  = "60s"
                      perSeriesAligner = "ALIGN_MAX"
                    }
                  }
                }
              }]
            }
          }
        }],
      )
    }
  }
}

resource "google_monitoring_dashboard" "skypanda" {
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_logging_metric.event, google_logging_metric.errors]
}

# -- alerts -----------------------------------------------------------------------------------

locals {
  alert_documentation = "skypanda deployment ${local.prefix == "" ? "(default)" : local.prefix}: see the skypanda dashboard, `skypanda doctor`, and the functions' logs (Logs Explorer, jsonPayload.event and labels.task / labels.job / labels.queue)."
}

# Stuck: the scaler saw jobs waiting on a queue within the window, and no job of that queue was
# dispatched in it (no pilot takes them: none launches, none fits, or they all fail at start).
resource "google_monitoring_alert_policy" "stuck" {
  display_name          = "${local.metric_prefix}stuck_queue"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "Jobs wait on a queue and none was dispatched for ${var.alert_stuck_minutes} min"
    condition_prometheus_query_language {
      query               = "(sum by (queue) (increase(${local.promql.queue_depth}_sum[${var.alert_stuck_minutes}m])) > 0) unless on (queue) (sum by (queue) (increase(${local.promql.dispatch_latency}_count[${var.alert_stuck_minutes}m])) > 0)"
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  documentation {
    content   = "Jobs are activated on a queue but no pilot has taken one for ${var.alert_stuck_minutes} minutes. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_logging_metric.event]
}

# Pilots failing: failed or missed pilots (the ones the scaler's back-off counts).
resource "google_monitoring_alert_policy" "pilots_failing" {
  display_name          = "${local.metric_prefix}pilots_failing"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "More than ${var.alert_failed_pilots} pilots failed or went missing in 10 min"
    condition_threshold {
      filter          = "metric.type=\"${local.metric_type.pilots_ended}\" metric.label.status=one_of(\"failed\",\"missed\")"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_failed_pilots
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.queue"]
      }
    }
  }

  documentation {
    content   = "Pilots end failed or missed (no heartbeat). The queue backs off; see its scaler note (`skypanda queues`). ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_logging_metric.event]
}

# Dead letters waiting: the dead-letter subscriptions keep what was parked until someone looks.
resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "${local.metric_prefix}dead_letters"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "Messages wait on a dead-letter subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" resource.type=\"pubsub_subscription\" resource.label.subscription_id=one_of(${join(",", [for s in local.dead_letter_subscriptions : "\"${s}\""])})"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    content   = "Events were dead-lettered (each with its reason in its attributes). Pull them from the hold subscription to inspect; the functions' ERROR lines with jsonPayload.event=\"event.dead\" say why. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }
}

# Error rate: ERROR lines per minute over the threshold.
resource "google_monitoring_alert_policy" "error_rate" {
  display_name          = "${local.metric_prefix}error_rate"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "More than ${var.alert_error_lines_per_minute} error lines per minute for 5 min"
    condition_threshold {
      filter          = "metric.type=\"${local.error_lines}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_error_lines_per_minute / 60
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    content   = "skypanda's functions or pilots log errors at a high rate. ${local.alert_documentation}"
    mime_type = "text/markdown"
  }

  depends_on = [google_logging_metric.errors]
}
