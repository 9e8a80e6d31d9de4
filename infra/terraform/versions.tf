# Terraform and provider versions, and the providers' settings.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.31"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region

  default_labels = local.labels
}

data "google_client_config" "current" {}

# Configured only when enable_gke is true (gke.tf): the cluster's endpoint and CA, and the
# caller's own access token. With GKE off, no kubernetes resource exists and these stay null.
provider "kubernetes" {
  host                   = local.gke.endpoint == null ? null : "https://${local.gke.endpoint}"
  cluster_ca_certificate = local.gke.ca_certificate == null ? null : base64decode(local.gke.ca_certificate)
  token                  = data.google_client_config.current.access_token
}
