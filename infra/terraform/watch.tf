# Data-driven work (`skypanda watch`): Cloud Storage notifies the object topic of every object
# finalized in each watched bucket (payload JSON_API_V1); the `watch` function makes them inputs
# of the watch rules whose source is in that bucket (runtime/objects.py decodes them). Objects
# of a bucket not listed here reach no rule on Google Cloud.

locals {
  # topology.topic_name(EventType.OBJECT_FINALIZED) (the tests compare it with the code).
  object_topic = "skypanda-object-finalized"
}

data "google_storage_project_service_account" "gcs" {
  project = var.project
}

# Cloud Storage's service agent publishes the notifications, to this topic only.
resource "google_pubsub_topic_iam_member" "gcs_agent_publisher" {
  topic  = google_pubsub_topic.topic[local.object_topic].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_storage_notification" "watched" {
  for_each       = var.watched_buckets
  bucket         = each.value
  payload_format = "JSON_API_V1"
  topic          = google_pubsub_topic.topic[local.object_topic].id
  event_types    = ["OBJECT_FINALIZE"]

  depends_on = [google_pubsub_topic_iam_member.gcs_agent_publisher]
}

# Pilots stage the new objects in (a task made by a watch rule has them as its inputs).
resource "google_storage_bucket_iam_member" "pilots_read_watched" {
  for_each = var.watched_buckets
  bucket   = each.value
  role     = "roles/storage.objectViewer"
  member   = google_service_account.pilot.member
}
