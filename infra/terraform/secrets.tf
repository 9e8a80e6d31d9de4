# Secret Manager: one secret per manifest secret (environment variable -> secret id after the
# prefix), with a random value unless var.secret_values gives one. Only the functions' service
# account may read them; pilots never get them (each gets a launch credential of its own).

resource "random_password" "secret" {
  for_each = local.manifest.secrets

  # 48 letters and digits: 285 bits, and safe in a header or a shell.
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.manifest.secrets

  secret_id = "${local.prefix}${each.value}"

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_version" "secret" {
  for_each = local.manifest.secrets

  secret      = google_secret_manager_secret.secret[each.key].id
  secret_data = try(var.secret_values[each.key], random_password.secret[each.key].result)
}

resource "google_secret_manager_secret_iam_member" "functions_accessor" {
  for_each = local.manifest.secrets

  secret_id = google_secret_manager_secret.secret[each.key].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.functions.member
}
