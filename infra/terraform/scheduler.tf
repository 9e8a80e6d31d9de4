# The tick: every minute (var.tick_schedule) a message on the tick topic, which the scale and
# sweep subscriptions both receive. The message says what it is with the attribute
# type=dev.skypanda.tick (a message with no type is dead-lettered); its id is the message id
# (runtime.cloudfn).

resource "google_cloud_scheduler_job" "tick" {
  name        = "${local.prefix}skypanda-tick"
  region      = var.region
  description = "skypanda tick: scale and sweep every queue."
  schedule    = var.tick_schedule
  time_zone   = "Etc/UTC"

  # A missed tick is not retried: the next one comes within a minute.
  retry_config {
    retry_count = 0
  }

  pubsub_target {
    topic_name = google_pubsub_topic.topic[local.tick_topic].id
    data       = base64encode("{}")
    attributes = {
      type = "dev.skypanda.tick"
    }
  }

  lifecycle {
    precondition {
      condition     = contains(local.manifest.topics, local.tick_topic)
      error_message = "skypanda.json has no topic ${local.tick_topic}: update local.tick_topic."
    }
  }

  depends_on = [google_project_service.api]
}
