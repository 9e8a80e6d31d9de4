# Two buckets: the logs and outputs pilots write (SKYPANDA_BUCKET), and the functions' source
# bundles. Neither is public; both are versioned and expire what they no longer need.

resource "google_storage_bucket" "logs" {
  #checkov:skip=CKV_GCP_62:usage logs need a second bucket per bucket; enable Cloud Audit Logs data access logs for storage.googleapis.com instead (who read which object)
  name                        = local.log_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = true
  }

  # Logs and outputs are kept log_retention_days, then deleted.
  lifecycle_rule {
    condition {
      age = var.log_retention_days
    }
    action {
      type = "Delete"
    }
  }

  # An overwritten or deleted object's old version is kept a week (a mistake can be undone),
  # then deleted.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.api]
}

# The functions read and write objects (logs, outputs) in this bucket only.
resource "google_storage_bucket_iam_member" "functions_logs" {
  bucket = google_storage_bucket.logs.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.functions.member
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:holds only the functions' bundles, written by Terraform; Cloud Audit Logs admin activity records every change
  name                        = local.source_bucket
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only bundles, all rebuilt by `skypanda deploy bundle`

  versioning {
    enabled = true
  }

  # Bundles are named by their md5: Terraform deletes the previous one when a new one is
  # uploaded, and its noncurrent version goes a week later.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.api]
}
