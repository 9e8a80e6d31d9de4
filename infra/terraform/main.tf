# skypanda on Google Cloud.
#
# Every name of the deployment (topics, subscriptions, functions and their sizes, the front
# door's pilot paths, TTL collections, secrets) comes from skypanda.json, which the code writes
# (`skypanda deploy manifest`, from skypanda.runtime.deployment). Firestore's indexes come from
# ../firestore.indexes.json (Firebase CLI format). Nothing here types a name the code owns:
# resources iterate over those two files, and tests/infra/test_terraform.py checks it.

locals {
  manifest = jsondecode(file("${path.module}/skypanda.json"))
  indexes  = jsondecode(file("${path.module}/../firestore.indexes.json"))

  prefix = var.prefix

  # -- functions ------------------------------------------------------------------------------
  functions = { for f in local.manifest.functions : f.name => f }
  http_functions = {
    for name, f in local.functions : name => f if f.trigger == "http"
  }

  # The front door: every manifest dispatch_path goes to the function serving pilots, the rest
  # to the one serving users, the URL map's default (runtime.deployment.HTTP_PARTS).
  api_function   = local.manifest.front_door_default
  pilot_function = one([for name in keys(local.http_functions) : name if name != local.api_function])

  bundle = coalesce(var.functions_bundle, "${path.module}/../../dist/skypanda-functions.zip")

  # The URL pilots (and the scaler's launch requests) use: the front door's, else the dispatch
  # function's. Not read from the function resource (every function's environment holds it, a
  # cycle): a Cloud Run service's deterministic URL is https://SERVICE-PROJECT_NUMBER.REGION.run.app,
  # and a gen2 function's service is named after the function.
  server_url = (
    var.domain != null
    ? "https://${var.domain}"
    : "https://${local.prefix}${local.pilot_function}-${data.google_project.this.number}.${var.region}.run.app"
  )

  # A value for every variable name a manifest function lists in `env`.
  env_values = {
    SKYPANDA_BUCKET     = google_storage_bucket.logs.name
    SKYPANDA_PREFIX     = local.prefix
    SKYPANDA_SERVER_URL = local.server_url
  }
  # Behind the load balancer, X-Forwarded-For ends with "<client>, <load balancer>" (both
  # appended by Google): the audit trail trusts those two entries and nothing a client sent.
  proxy_env = var.domain != null ? { SKYPANDA_TRUSTED_PROXIES = "2" } : {}

  # -- Pub/Sub ---------------------------------------------------------------------------------
  topics        = toset(local.manifest.topics)
  subscriptions = { for s in local.manifest.subscriptions : s.name => s }
  # The functions Pub/Sub pushes to, and the subscriptions that dead-letter.
  push_functions = toset([for s in local.manifest.subscriptions : s.function if s.function != null])
  dead_lettering = { for name, s in local.subscriptions : name => s if s.dead_letter }
  # The topic Cloud Scheduler ticks on (topology.topic_name(EventType.TICK)).
  tick_topic = local.manifest.tick_topic
  # The topic other pipelines submit on; its messages must follow schemas/submission.avsc.
  submission_topic = local.manifest.submission_topic

  # -- Firestore -------------------------------------------------------------------------------
  database   = "(default)"
  ttl_fields = { for c in local.manifest.collections : c.name => c.ttl_field if c.ttl_field != null }
  composite_indexes = {
    for i in local.indexes.indexes :
    "${i.collectionGroup}:${join(",", [for f in i.fields : "${f.fieldPath}:${try(f.order, f.arrayConfig)}"])}" => i
  }
  field_overrides = {
    for o in try(local.indexes.fieldOverrides, []) : "${o.collectionGroup}:${o.fieldPath}" => o
  }

  # -- names -----------------------------------------------------------------------------------
  log_bucket    = coalesce(var.bucket_name, "${var.project}-${local.prefix}skypanda-logs")
  source_bucket = "${var.project}-${local.prefix}skypanda-source"

  labels = merge(
    { app = "skypanda", deployment = local.prefix == "" ? "default" : trimsuffix(local.prefix, "-") },
    var.labels,
  )
}

data "google_project" "this" {
  project_id = var.project
}
