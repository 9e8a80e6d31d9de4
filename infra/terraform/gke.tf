# Pilots on GKE (enable_gke): a Kubernetes Job per pilot (adapters.gcp.gke_launcher), made by the
# scaler, which reaches the cluster with the functions' own Google credentials
# (adapters.gcp.gke_access: the queue's launcher.cluster names the cluster).
#
# What this file makes:
#   - an Autopilot cluster with private nodes and a Cloud NAT (pilots reach the API over the
#     internet), unless var.gke_cluster names an existing cluster;
#   - the namespace, the pilots' Kubernetes service account (no Workload Identity binding: pilots
#     have no Google role), and RBAC letting the functions' Google service account manage Jobs
#     in that namespace only;
#   - roles/container.clusterViewer for the functions' account: enough to describe the cluster
#     and authenticate to it; what it may do inside is RBAC's (roles/container.developer would
#     give it every namespace of every cluster in the project).
#
# The matching queue definition is the output gke_queue_launcher.

locals {
  create_gke = var.enable_gke && var.gke_cluster == null

  gke = {
    name = one(concat(
      google_container_cluster.autopilot[*].name, data.google_container_cluster.existing[*].name,
    ))
    location = one(concat(
      google_container_cluster.autopilot[*].location, data.google_container_cluster.existing[*].location,
    ))
    endpoint = one(concat(
      google_container_cluster.autopilot[*].endpoint, data.google_container_cluster.existing[*].endpoint,
    ))
    ca_certificate = one(concat(
      [for c in google_container_cluster.autopilot : c.master_auth[0].cluster_ca_certificate],
      [for c in data.google_container_cluster.existing : c.master_auth[0].cluster_ca_certificate],
    ))
  }
}

resource "google_container_cluster" "autopilot" {
  #checkov:skip=CKV_GCP_12:Autopilot enforces NetworkPolicy with GKE Dataplane V2 built in; the network_policy block is not settable on Autopilot
  #checkov:skip=CKV_GCP_61:Autopilot manages intranode visibility; VPC flow logs belong to var.gke_network's subnets, which this module does not own
  #checkov:skip=CKV_GCP_66:pilot images are chosen per queue by the operator; a Binary Authorization policy needs attestors this deployment does not have (enable it on the project when it does)
  #checkov:skip=CKV_GCP_69:Autopilot always runs the GKE metadata server (Workload Identity); node_config is not settable on Autopilot
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain's gke-security-groups group; the only RBAC subject here is one service account
  count = local.create_gke ? 1 : 0

  name                = "${local.prefix}skypanda"
  location            = var.region
  network             = var.gke_network
  enable_autopilot    = true
  deletion_protection = var.deletion_protection
  # default_labels (versions.tf) adds app and deployment.
  resource_labels = { component = "pilots" }

  release_channel {
    channel = "REGULAR"
  }

  ip_allocation_policy {}

  # Nodes have no public address. The control plane keeps a public endpoint: the scaler calls
  # it from Cloud Functions.
  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
  }

  # Only Google Cloud's public addresses (Cloud Functions among them, which have no fixed
  # egress address) and var.gke_admin_cidrs (whoever runs this Terraform: the kubernetes
  # provider talks to the control plane) reach the control plane.
  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = true

    dynamic "cidr_blocks" {
      for_each = var.gke_admin_cidrs
      content {
        cidr_block   = cidr_blocks.value
        display_name = "admin ${cidr_blocks.key}"
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_compute_router" "gke" {
  count = local.create_gke ? 1 : 0

  name    = "${local.prefix}skypanda-gke"
  region  = var.region
  network = var.gke_network
}

resource "google_compute_router_nat" "gke" {
  count = local.create_gke ? 1 : 0

  name                               = "${local.prefix}skypanda-gke"
  router                             = google_compute_router.gke[0].name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

data "google_container_cluster" "existing" {
  count = var.enable_gke && var.gke_cluster != null ? 1 : 0

  name     = var.gke_cluster.name
  location = var.gke_cluster.location
}

resource "google_project_iam_member" "functions_gke_viewer" {
  count = var.enable_gke ? 1 : 0

  project = var.project
  role    = "roles/container.clusterViewer"
  member  = google_service_account.functions.member
}

resource "kubernetes_namespace_v1" "pilots" {
  count = var.enable_gke ? 1 : 0

  metadata {
    name   = var.gke_namespace
    labels = { "app.kubernetes.io/part-of" = "skypanda" }
  }
}

# The pilots' pods run as this account. It may not call the Kubernetes API (no token is mounted)
# and is bound to no Google service account.
resource "kubernetes_service_account_v1" "pilot" {
  count = var.enable_gke ? 1 : 0

  metadata {
    name      = "skypanda-pilot"
    namespace = kubernetes_namespace_v1.pilots[0].metadata[0].name
  }
  automount_service_account_token = false
}

# What GkeLauncher does: create, list and delete batch/v1 Jobs (their pods go with them).
resource "kubernetes_role_v1" "launcher" {
  count = var.enable_gke ? 1 : 0

  metadata {
    name      = "skypanda-launcher"
    namespace = kubernetes_namespace_v1.pilots[0].metadata[0].name
  }

  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = ["create", "get", "list", "watch", "delete"]
  }
}

# GKE names a Google service account in RBAC by its email.
resource "kubernetes_role_binding_v1" "launcher" {
  count = var.enable_gke ? 1 : 0

  metadata {
    name      = "skypanda-launcher"
    namespace = kubernetes_namespace_v1.pilots[0].metadata[0].name
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.launcher[0].metadata[0].name
  }

  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "User"
    name      = google_service_account.functions.email
  }
}
