# The Google APIs a deployment uses. Left enabled on destroy: other things in the project may
# use them too.

locals {
  apis = toset(concat(
    [
      "artifactregistry.googleapis.com", # the functions' images
      "cloudbuild.googleapis.com",       # builds the functions from the bundle
      "cloudfunctions.googleapis.com",
      "cloudresourcemanager.googleapis.com", # the project's number (data.google_project)
      "cloudscheduler.googleapis.com",
      "eventarc.googleapis.com", # the outbox trigger (release)
      "firestore.googleapis.com",
      "iam.googleapis.com",
      "iamcredentials.googleapis.com", # OIDC tokens of the push subscriptions
      "logging.googleapis.com",
      "monitoring.googleapis.com", # dashboard and alerts (monitoring.tf)
      "pubsub.googleapis.com",
      "run.googleapis.com", # gen2 functions are Cloud Run services; pilots are Cloud Run jobs
      "secretmanager.googleapis.com",
      "storage.googleapis.com",
    ],
    var.domain != null ? ["compute.googleapis.com"] : [],
    var.enable_gke ? ["compute.googleapis.com", "container.googleapis.com"] : [],
  ))
}

resource "google_project_service" "api" {
  for_each = local.apis

  project            = var.project
  service            = each.key
  disable_on_destroy = false
}
