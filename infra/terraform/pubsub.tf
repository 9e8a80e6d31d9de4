# Pub/Sub: the topology of skypanda.adapters.gcp.topology, from the manifest. Each event topic's
# subscriptions push to the function serving its handler (authenticated with an OIDC token of
# the push service account), redeliver with a 1-60 s back-off, and park a message on the
# dead-letter topic after 5 failed deliveries. The dead-letter topic's `hold` subscription is a
# pull subscription that keeps what it receives for inspection (a topic without a subscription
# drops its messages).

locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # topology.ACK_DEADLINE_S, MIN_BACKOFF_S, MAX_BACKOFF_S, MAX_DELIVERY_ATTEMPTS (the tests
  # compare them with the code).
  ack_deadline_s        = 60
  min_backoff           = "1s"
  max_backoff           = "60s"
  max_delivery_attempts = 5
  hold_retention        = "2678400s" # 31 days, the most a subscription keeps messages
}

resource "google_pubsub_topic" "topic" {
  #checkov:skip=CKV_GCP_83:messages carry event ids and small JSON (no payload data, no credentials) and live minutes; Google-managed encryption at rest, CMEK is on the buckets
  for_each = local.topics

  name = "${local.prefix}${each.key}"
  # Dead letters stay readable for a week even when the hold subscription was recreated.
  message_retention_duration = each.key == local.manifest.dead_letter_topic ? "604800s" : null

  # Pub/Sub refuses, at publishing, a submission that is not the schema's record.
  dynamic "schema_settings" {
    for_each = each.key == local.submission_topic ? [google_pubsub_schema.submission.id] : []
    content {
      schema   = schema_settings.value
      encoding = "JSON"
    }
  }

  depends_on = [google_project_service.api]
}

# The record a submission message carries (runtime.intake), in the repository's schemas/.
resource "google_pubsub_schema" "submission" {
  name       = "${local.prefix}${local.submission_topic}"
  type       = "AVRO"
  definition = file("${path.module}/../../schemas/submission.avsc")

  depends_on = [google_project_service.api]
}

resource "google_pubsub_subscription" "sub" {
  for_each = local.subscriptions

  name                 = "${local.prefix}${each.key}"
  topic                = google_pubsub_topic.topic[each.value.topic].id
  ack_deadline_seconds = local.ack_deadline_s
  # Only the hold subscription keeps messages long: the others deliver within minutes.
  message_retention_duration = each.value.function == null ? local.hold_retention : null

  # Never expire: a quiet topic (bulk actions, dead letters) must keep its subscription.
  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = local.min_backoff
    maximum_backoff = local.max_backoff
  }

  dynamic "push_config" {
    for_each = each.value.function == null ? [] : [each.value.function]
    content {
      push_endpoint = google_cloudfunctions2_function.fn[push_config.value].service_config[0].uri
      oidc_token {
        service_account_email = google_service_account.push.email
        audience              = google_cloudfunctions2_function.fn[push_config.value].service_config[0].uri
      }
    }
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter ? [local.manifest.dead_letter_topic] : []
    content {
      dead_letter_topic     = google_pubsub_topic.topic[dead_letter_policy.value].id
      max_delivery_attempts = local.max_delivery_attempts
    }
  }
}

# Dead lettering is done by the Pub/Sub service agent: it publishes to the dead-letter topic and
# acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "agent_dead_letter_publisher" {
  topic  = google_pubsub_topic.topic[local.manifest.dead_letter_topic].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_subscriber" {
  for_each = local.dead_lettering

  subscription = google_pubsub_subscription.sub[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The functions publish events (and dead letters they decide on) to the manifest's topics only.
resource "google_pubsub_topic_iam_member" "functions_publisher" {
  for_each = local.topics

  topic  = google_pubsub_topic.topic[each.key].id
  role   = "roles/pubsub.publisher"
  member = google_service_account.functions.member
}
