# Inputs. Only `project` is required; everything else has a default that deploys a working
# skypanda (Cloud Run pilots, no GKE, no front door).

variable "project" {
  description = "The Google Cloud project id to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the Cloud Run pilot job, the scheduler and the buckets."
  type        = string
  default     = "us-central1"
}

variable "prefix" {
  description = "Put before every topic, subscription, function, collection, secret and service account name: several deployments in one project (SKYPANDA_PREFIX). Empty for production."
  type        = string
  default     = ""

  validation {
    # Service account ids are the tightest: 6-30 characters, and the longest suffix is
    # 16 (skypanda-trigger).
    condition     = can(regex("^([a-z][-a-z0-9]{0,12})?$", var.prefix))
    error_message = "prefix: empty, or up to 13 lowercase letters, digits and dashes starting with a letter (e.g. \"dev-\")."
  }
}

variable "firestore_location" {
  description = "Location of the Firestore database (a multi-region such as nam5 or eur3, or a region). The outbox trigger lives there too."
  type        = string
  default     = "nam5"
}

variable "manage_firestore_database" {
  description = "Create the project's (default) Firestore database. False when another deployment (another prefix) in the project already manages it."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "Name of the log and output bucket (SKYPANDA_BUCKET). Default: PROJECT-PREFIXskypanda-logs."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Delete job logs and outputs this many days after they were written."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 1
    error_message = "log_retention_days must be at least 1."
  }
}

variable "kms_key_name" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) encrypting both buckets (CMEK). The Cloud Storage service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null
}

variable "functions_bundle" {
  description = "Path to the zip `skypanda deploy bundle` builds. Default: dist/skypanda-functions.zip at the repository's root."
  type        = string
  default     = null
}

variable "enable_cloudrun" {
  description = "Pilots as Cloud Run job executions: the pilot job, and the functions' right to run it."
  type        = bool
  default     = true
}

variable "enable_gke" {
  description = "Pilots as GKE pods: a namespace, a pilot Kubernetes service account and RBAC for the functions, on an Autopilot cluster (or gke_cluster)."
  type        = bool
  default     = false
}

variable "gke_cluster" {
  description = "An existing GKE cluster to launch pilots on (name and location) instead of creating an Autopilot one. Used only with enable_gke."
  type = object({
    name     = string
    location = string
  })
  default = null
}

variable "gke_network" {
  description = "VPC network of the Autopilot cluster this module creates (its nodes are private; a Cloud NAT on this network lets pilots reach the API)."
  type        = string
  default     = "default"
}

variable "gke_admin_cidrs" {
  description = "Addresses (CIDR) allowed to reach the Autopilot cluster's control plane besides Google Cloud's own: where this Terraform runs (Cloud Shell needs none)."
  type        = list(string)
  default     = []
}

variable "gke_namespace" {
  description = "Kubernetes namespace of the pilots (a queue's launcher.namespace)."
  type        = string
  default     = "skypanda"
}

variable "pilot_image" {
  description = "Container image of the pilots (Python 3.11+ with skypanda installed). Required when enable_cloudrun or enable_gke."
  type        = string
  default     = null
}

variable "cloudrun_queue" {
  description = "The queue whose pilots the Cloud Run job made here runs (other Cloud Run queues get jobs the scaler creates)."
  type        = string
  default     = "cloudrun"

  validation {
    # A label value as it is (cloudrun_jobs.label_value leaves it alone) and part of a job id.
    condition     = can(regex("^[a-z][-a-z0-9]{0,30}$", var.cloudrun_queue))
    error_message = "cloudrun_queue: up to 31 lowercase letters, digits and dashes, starting with a letter."
  }
}

variable "pilot_cores" {
  description = "CPUs of each pilot of the Cloud Run job made here (a Cloud Run value: 1, 2, 4, 6 or 8)."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 2, 4, 6, 8], var.pilot_cores)
    error_message = "pilot_cores must be 1, 2, 4, 6 or 8 (Cloud Run's CPU limits)."
  }
}

variable "pilot_memory_mb" {
  description = "Memory of each pilot of the Cloud Run job made here, in MiB: what Cloud Run allows with pilot_cores CPUs (1 CPU: 512-4096, 2: 512-8192, 4: 2048-16384, 6: 4096-24576, 8: 4096-32768)."
  type        = number
  default     = 4000

  validation {
    condition     = var.pilot_memory_mb >= 512 && var.pilot_memory_mb <= 32768
    error_message = "pilot_memory_mb must be between 512 and 32768."
  }
}

variable "pilot_timeout_s" {
  description = "Longest a Cloud Run pilot execution may run, in seconds (the queue's launcher.timeout_s)."
  type        = number
  default     = 3600
}

variable "domain" {
  description = "Optional DNS name of the front door (a global external Application Load Balancer with a managed certificate). Null: users and pilots call the functions' own URLs."
  type        = string
  default     = null
}

variable "watched_buckets" {
  description = "Buckets whose new objects may feed watch rules (skypanda watch add --source gs://bucket/prefix): each gets a Cloud Storage notification on the object topic, and the pilots may read its objects."
  type        = set(string)
  default     = []
}

variable "tick_schedule" {
  description = "Cron schedule of the tick (scale and sweep), in UTC."
  type        = string
  default     = "* * * * *"
}

variable "secret_values" {
  description = "Values for the manifest's secrets, by environment variable (SKYPANDA_TOKEN, SKYPANDA_SIGNING_KEY). A secret not given gets a random value."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "extra_env" {
  description = "More environment variables for every function (SKYPANDA_OIDC_ISSUER, SKYPANDA_GOOGLE_AUDIENCES, SKYPANDA_LAUNCH_TTL_S, SKYPANDA_MAX_ACTIVE_TASKS, SKYPANDA_MAX_ACTIVE_JOBS, ...). Not for secrets."
  type        = map(string)
  default     = {}
}

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the GKE cluster and the Cloud Run pilot job from `terraform destroy`. The Firestore database is always protected."
  type        = bool
  default     = true
}

variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) the alerts notify (monitoring.tf). Empty: the alerts open incidents in the console only."
  type        = list(string)
  default     = []
}

variable "alert_stuck_minutes" {
  description = "Alert when jobs have waited on a queue this many minutes with none dispatched."
  type        = number
  default     = 30

  validation {
    condition     = var.alert_stuck_minutes >= 5
    error_message = "alert_stuck_minutes must be at least 5."
  }
}

variable "alert_failed_pilots" {
  description = "Alert when more pilots than this end failed or missed within 10 minutes on a queue."
  type        = number
  default     = 3
}

variable "alert_error_lines_per_minute" {
  description = "Alert when the functions and pilots log more ERROR lines per minute than this, for 5 minutes."
  type        = number
  default     = 10
}
