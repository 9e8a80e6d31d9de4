output "api_url" {
  description = "Where users reach skypanda (SKYPANDA_SERVER for the CLI)."
  value       = var.domain != null ? "https://${var.domain}" : google_cloudfunctions2_function.fn[local.api_function].service_config[0].uri
}

output "dispatch_url" {
  description = "Where pilots reach skypanda (the functions' SKYPANDA_SERVER_URL)."
  value       = local.server_url
}

output "frontdoor_ip" {
  description = "The front door's address: point an A record of var.domain at it. Null without a domain."
  value       = one(google_compute_global_address.frontdoor[*].address)
}

output "function_uris" {
  description = "Each function's own Cloud Run URI."
  value       = { for name, f in google_cloudfunctions2_function.fn : name => f.service_config[0].uri }
}

output "bucket" {
  description = "The log and output bucket (SKYPANDA_BUCKET)."
  value       = google_storage_bucket.logs.name
}

output "source_bucket" {
  description = "The bucket holding the functions' bundles."
  value       = google_storage_bucket.source.name
}

output "topics" {
  description = "Pub/Sub topic ids, by manifest name."
  value       = { for name, t in google_pubsub_topic.topic : name => t.id }
}

output "dead_letter_subscription" {
  description = "Pull dead letters from here to inspect them (gcloud pubsub subscriptions pull)."
  value = one([
    for name, s in google_pubsub_subscription.sub : s.id if local.subscriptions[name].function == null
  ])
}

output "service_accounts" {
  description = "The deployment's service accounts, by role."
  value = {
    functions = google_service_account.functions.email
    build     = google_service_account.build.email
    push      = google_service_account.push.email
    trigger   = google_service_account.trigger.email
    pilot     = google_service_account.pilot.email
  }
}

output "secrets" {
  description = "Secret Manager secrets, by the environment variable they fill. Read the admin token with: gcloud secrets versions access latest --secret=SECRET_ID."
  value       = { for env, s in google_secret_manager_secret.secret : env => s.secret_id }
}

output "cloudrun_queue_launcher" {
  description = "The `launcher` of var.cloudrun_queue's queue definition (skypanda queues apply), matching the Cloud Run job made here."
  value = var.enable_cloudrun ? {
    kind            = "cloudrun"
    project         = var.project
    region          = var.region
    job             = google_cloud_run_v2_job.pilot[0].name
    image           = var.pilot_image
    service_account = google_service_account.pilot.email
    timeout_s       = var.pilot_timeout_s
  } : null
}

output "gke_queue_launcher" {
  description = "The `launcher` of a GKE queue's definition (skypanda queues apply), for this cluster and namespace."
  value = var.enable_gke ? {
    kind            = "gke"
    cluster         = "projects/${var.project}/locations/${local.gke.location}/clusters/${local.gke.name}"
    namespace       = var.gke_namespace
    image           = var.pilot_image
    service_account = kubernetes_service_account_v1.pilot[0].metadata[0].name
  } : null
}
