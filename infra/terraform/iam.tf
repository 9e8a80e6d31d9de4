# Service accounts, one per job, each with the least it needs.
#
#   functions  what every function runs as: Firestore, its own topics, the log bucket, its
#              secrets, and launching pilots (Cloud Run job executions; GKE Jobs in one namespace)
#   build      what Cloud Build builds the functions' images as
#   push       signs the OIDC tokens of the push subscriptions; may invoke the Pub/Sub-fed
#              functions and nothing else
#   trigger    the outbox trigger's identity (Eventarc): receives events, invokes `release`
#   pilot      what pilots run as: no Google role at all. Pilots talk only to skypanda's API,
#              with a launch credential of their own (adapters.pilot_credentials)
#
# Cloud Scheduler publishes the tick with its own service agent (a Pub/Sub target has no
# service account), so there is no scheduler account to make.

resource "google_service_account" "functions" {
  account_id   = "${local.prefix}skypanda-fn"
  display_name = "skypanda functions"
  description  = "Runs every skypanda Cloud Function."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "build" {
  account_id   = "${local.prefix}skypanda-build"
  display_name = "skypanda function builds"
  description  = "Cloud Build builds the skypanda functions' images as this account."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "push" {
  account_id   = "${local.prefix}skypanda-push"
  display_name = "skypanda Pub/Sub push"
  description  = "Identity of the push subscriptions: invokes the Pub/Sub-fed skypanda functions."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "trigger" {
  account_id   = "${local.prefix}skypanda-trigger"
  display_name = "skypanda outbox trigger"
  description  = "Identity of the Eventarc trigger on the outbox: invokes release."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "pilot" {
  account_id   = "${local.prefix}skypanda-pilot"
  display_name = "skypanda pilots"
  description  = "Cloud Run pilots run as this account. It has no role: pilots use only skypanda's API."

  depends_on = [google_project_service.api]
}

# -- functions -----------------------------------------------------------------------------------

# Firestore has no per-collection IAM: datastore.user (read and write documents) on the project.
resource "google_project_iam_member" "functions_datastore" {
  project = var.project
  role    = "roles/datastore.user"
  member  = google_service_account.functions.member
}

# Pub/Sub publisher (per topic) is in pubsub.tf, the log bucket in storage.tf, the secrets in
# secrets.tf, GKE in gke.tf.

# Launching Cloud Run pilots (adapters.gcp.cloudrun_launcher): the scaler makes, updates, lists
# and deletes (idle push-mode side jobs) its queues' jobs, runs one execution per pilot with
# per-execution overrides (its id and launch credential), lists executions and their tasks, and
# cancels them. Narrower than roles/run.developer, which could also replace the functions' own
# Cloud Run services. The tests map each Cloud Run call of the launcher to a permission here.
resource "google_project_iam_custom_role" "pilot_launcher" {
  count = var.enable_cloudrun ? 1 : 0

  role_id     = "${replace(local.prefix, "-", "_")}skypandaPilotLauncher"
  title       = "skypanda pilot launcher"
  description = "Create and run Cloud Run jobs whose executions are skypanda pilots."
  permissions = [
    "run.executions.cancel",
    "run.executions.get",
    "run.executions.list",
    "run.jobs.create",
    "run.jobs.delete",
    "run.jobs.get",
    "run.jobs.list",
    "run.jobs.run",
    "run.jobs.runWithOverrides",
    "run.jobs.update",
    "run.operations.get",
    "run.tasks.get",
    "run.tasks.list",
  ]
}

resource "google_project_iam_member" "functions_pilot_launcher" {
  count = var.enable_cloudrun ? 1 : 0

  project = var.project
  role    = google_project_iam_custom_role.pilot_launcher[0].id
  member  = google_service_account.functions.member
}

# A job whose pilots run as the pilot account may be made only by who may act as it.
resource "google_service_account_iam_member" "functions_act_as_pilot" {
  count = var.enable_cloudrun ? 1 : 0

  service_account_id = google_service_account.pilot.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.functions.member
}

# -- build ---------------------------------------------------------------------------------------

resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
    # the source Cloud Functions copies to its own gcf-sources bucket in the project
    "roles/storage.objectViewer",
  ])

  project = var.project
  role    = each.key
  member  = google_service_account.build.member
}

# -- push and trigger ----------------------------------------------------------------------------

# The Pub/Sub service agent mints the OIDC tokens of push subscriptions (and of the Eventarc
# trigger's transport subscription).
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  for_each = {
    push    = google_service_account.push.name
    trigger = google_service_account.trigger.name
  }

  service_account_id = each.value
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}
