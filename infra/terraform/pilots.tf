# Pilots on Cloud Run: the job whose executions are the pilots of var.cloudrun_queue. It is what
# the scaler's launcher (adapters.gcp.cloudrun_jobs.job_template) would make for that queue, so
# the launcher finds it as it wants it and leaves it alone; other Cloud Run queues get their
# jobs from the launcher on their first launch. Each execution gets its pilot id and a launch
# credential of its own as overrides of the container named "pilot" (never a secret here).
#
# The launcher owns its queues' jobs: when the queue definition asks for something else (another
# image, size, timeout), it updates the job, and the next `terraform apply` would put this one
# back. Keep the queue's launcher equal to the output cloudrun_queue_launcher and its
# pilot_resources equal to pilot_cores and pilot_memory_mb.

locals {
  # Cloud Run's CPU and memory pairs (cloudrun_limits.CPU_MEMORY_MIB): CPUs -> least and most
  # MiB. The pilot's size is used as the container's limits as it is, so it must be one.
  cloudrun_memory_mib = {
    "1" = [512, 4096]
    "2" = [512, 8192]
    "4" = [2048, 16384]
    "6" = [4096, 24576]
    "8" = [4096, 32768]
  }
  pilot_memory_range = local.cloudrun_memory_mib[tostring(var.pilot_cores)]
}

resource "google_cloud_run_v2_job" "pilot" {
  count = var.enable_cloudrun ? 1 : 0

  name                = "${local.prefix}skypanda-pilot-${var.cloudrun_queue}"
  location            = var.region
  deletion_protection = var.deletion_protection
  labels              = { skypanda-queue = var.cloudrun_queue }

  template {
    task_count = 1
    labels     = { skypanda-queue = var.cloudrun_queue }

    template {
      service_account = google_service_account.pilot.email
      timeout         = "${var.pilot_timeout_s}s"
      max_retries     = 0 # a failed pilot is not restarted: the scaler decides

      containers {
        name    = "pilot"
        image   = var.pilot_image
        command = ["python3", "-m", "skypanda", "pilot"]
        # What the pilot offers: the container's limits, not the machine's.
        args = ["--memory-mb", tostring(var.pilot_memory_mb), "--cores", tostring(var.pilot_cores)]

        env {
          name  = "SKYPANDA_SERVER"
          value = local.server_url
        }
        env {
          name  = "SKYPANDA_QUEUE"
          value = var.cloudrun_queue
        }

        resources {
          limits = {
            cpu    = tostring(var.pilot_cores)
            memory = "${var.pilot_memory_mb}Mi"
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.pilot_image != null
      error_message = "enable_cloudrun needs pilot_image (an image with Python 3.11+ and skypanda)."
    }
    precondition {
      condition = (
        var.pilot_memory_mb >= local.pilot_memory_range[0] && var.pilot_memory_mb <= local.pilot_memory_range[1]
      )
      error_message = "A Cloud Run task with ${var.pilot_cores} CPU(s) takes ${local.pilot_memory_range[0]} to ${local.pilot_memory_range[1]} MiB: change pilot_memory_mb or pilot_cores."
    }
  }

  depends_on = [google_project_service.api]
}
