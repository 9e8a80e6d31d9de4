# The front door (var.domain set): one HTTPS address for users and pilots, a global external
# Application Load Balancer with a serverless NEG per HTTP function. The URL map sends every
# manifest dispatch_path (every path a pilot route uses, so matching paths only is right for
# every method) to dispatch, and everything else to submit. The functions then accept only
# internal and load-balancer traffic (functions.tf).
#
# Point an A record of var.domain at the output frontdoor_ip; the managed certificate becomes
# active once it resolves (up to an hour).

locals {
  frontdoor = { for name, f in local.http_functions : name => f if var.domain != null }
}

resource "google_compute_global_address" "frontdoor" {
  count = var.domain != null ? 1 : 0

  name = "${local.prefix}skypanda"

  depends_on = [google_project_service.api]
}

resource "google_compute_region_network_endpoint_group" "fn" {
  for_each = local.frontdoor

  name                  = "${local.prefix}skypanda-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloudfunctions2_function.fn[each.key].name
  }
}

resource "google_compute_backend_service" "fn" {
  for_each = local.frontdoor

  name                  = "${local.prefix}skypanda-${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  backend {
    group = google_compute_region_network_endpoint_group.fn[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

resource "google_compute_url_map" "frontdoor" {
  count = var.domain != null ? 1 : 0

  name            = "${local.prefix}skypanda"
  default_service = google_compute_backend_service.fn[local.api_function].id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "api"
  }

  path_matcher {
    name            = "api"
    default_service = google_compute_backend_service.fn[local.api_function].id

    # Route rules are tried by priority; the templates do not overlap, so their order is only
    # the manifest's.
    dynamic "route_rules" {
      for_each = local.manifest.dispatch_paths
      content {
        priority = route_rules.key + 1
        service  = google_compute_backend_service.fn[local.pilot_function].id
        match_rules {
          path_template_match = route_rules.value
        }
      }
    }
  }
}

resource "google_compute_managed_ssl_certificate" "frontdoor" {
  count = var.domain != null ? 1 : 0

  name = "${local.prefix}skypanda"

  managed {
    domains = [var.domain]
  }
}

resource "google_compute_ssl_policy" "frontdoor" {
  count = var.domain != null ? 1 : 0

  name            = "${local.prefix}skypanda"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "frontdoor" {
  count = var.domain != null ? 1 : 0

  name             = "${local.prefix}skypanda"
  url_map          = google_compute_url_map.frontdoor[0].id
  ssl_certificates = [google_compute_managed_ssl_certificate.frontdoor[0].id]
  ssl_policy       = google_compute_ssl_policy.frontdoor[0].id
}

resource "google_compute_global_forwarding_rule" "frontdoor" {
  count = var.domain != null ? 1 : 0

  name                  = "${local.prefix}skypanda"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.frontdoor[0].id
  port_range            = "443"
  target                = google_compute_target_https_proxy.frontdoor[0].id
}

# Plain HTTP only redirects to HTTPS: no token ever crosses the network in clear.
resource "google_compute_url_map" "https_redirect" {
  count = var.domain != null ? 1 : 0

  name = "${local.prefix}skypanda-https-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "PERMANENT_REDIRECT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "https_redirect" {
  count = var.domain != null ? 1 : 0

  name    = "${local.prefix}skypanda-https-redirect"
  url_map = google_compute_url_map.https_redirect[0].id
}

resource "google_compute_global_forwarding_rule" "https_redirect" {
  count = var.domain != null ? 1 : 0

  name                  = "${local.prefix}skypanda-https-redirect"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.frontdoor[0].id
  port_range            = "80"
  target                = google_compute_target_http_proxy.https_redirect[0].id
}
