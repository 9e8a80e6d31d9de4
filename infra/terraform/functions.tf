# The Cloud Functions (gen2), one per manifest function, all built from the bundle
# `skypanda deploy bundle` makes (main.py, requirements.txt and the skypanda wheel).
#
#   http       submit (users' routes), dispatch (pilots' routes): public at the Cloud Run level,
#              authenticated by skypanda itself; behind the front door when var.domain is set
#   pubsub     fed by the push subscriptions of pubsub.tf (no event_trigger: a gen2 function has
#              one Eventarc trigger, `scale` needs two topics, and Eventarc's subscriptions
#              cannot dead-letter); invoked by the push service account only
#   firestore  release: an Eventarc trigger on the outbox documents' creation

# A new bundle is a new object name, so the functions rebuild exactly when the code changed.
resource "google_storage_bucket_object" "bundle" {
  name   = "${local.prefix}skypanda-functions-${filemd5(local.bundle)}.zip"
  bucket = google_storage_bucket.source.name
  source = local.bundle
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  name        = "${local.prefix}${each.key}"
  location    = var.region
  description = "skypanda ${each.key} (${each.value.trigger})"

  build_config {
    runtime         = "python311"
    entry_point     = each.key
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.bundle.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout_s
    min_instance_count               = 0
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    service_account_email            = google_service_account.functions.email
    all_traffic_on_latest_revision   = true

    # HTTP: reachable from the internet, or only through the load balancer when there is one.
    # Pub/Sub push and Eventarc deliveries count as internal traffic.
    ingress_settings = (
      each.value.trigger != "http" ? "ALLOW_INTERNAL_ONLY"
      : var.domain != null ? "ALLOW_INTERNAL_AND_GCLB" : "ALLOW_ALL"
    )

    environment_variables = merge(
      var.extra_env,
      local.proxy_env,
      { for name in each.value.env : name => local.env_values[name] },
    )

    dynamic "secret_environment_variables" {
      for_each = toset(each.value.secrets)
      content {
        key        = secret_environment_variables.value
        project_id = var.project
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        # A numbered version: a new value is a new revision (instances started before keep
        # the old one until then).
        version = google_secret_manager_secret_version.secret[secret_environment_variables.value].version
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger == "firestore" ? [each.key] : []
    content {
      # Firestore events come from the database's location.
      trigger_region        = var.firestore_location
      event_type            = local.manifest.outbox_trigger
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.trigger.email

      event_filters {
        attribute = "database"
        value     = local.database
      }
      event_filters {
        attribute = "document"
        value     = "${local.prefix}${local.manifest.outbox_document}"
        operator  = "match-path-pattern"
      }
    }
  }

  depends_on = [
    google_project_service.api,
    google_firestore_database.db,
    google_project_iam_member.build,
    google_secret_manager_secret_iam_member.functions_accessor,
    google_project_iam_member.trigger_event_receiver,
  ]
}

# submit and dispatch accept every caller at the Cloud Run level ONLY because skypanda
# authenticates every request itself: a user's or admin's bearer token (SKYPANDA_TOKEN, tokens
# made by `skypanda users add`, OIDC or Google ID tokens), or a pilot's own credential. An
# unauthenticated request gets 401 from skypanda, never data. Pilots outside Google Cloud (any
# batch cluster) could not present a Google identity, so IAM cannot be the gate here.
resource "google_cloud_run_service_iam_member" "http_public" {
  #checkov:skip=CKV_GCP_102:skypanda authenticates every request itself (bearer tokens, pilot credentials); pilots on other clusters have no Google identity to present
  for_each = local.http_functions

  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# The push subscriptions' OIDC tokens are the push service account's: it alone may invoke the
# Pub/Sub-fed functions.
resource "google_cloud_run_service_iam_member" "push_invoker" {
  for_each = local.push_functions

  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# The outbox trigger delivers as the trigger service account.
resource "google_cloud_run_service_iam_member" "trigger_invoker" {
  for_each = { for name, f in local.functions : name => f if f.trigger == "firestore" }

  location = var.region
  service  = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}
