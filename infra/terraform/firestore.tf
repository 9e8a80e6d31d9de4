# Firestore (native mode): the database, the composite indexes and single-field overrides of
# ../firestore.indexes.json, and a TTL policy on each manifest collection's ttl_field. Every
# collection name carries the deployment's prefix, as the code's (FirestoreStore(prefix=...)).

resource "google_firestore_database" "db" {
  count = var.manage_firestore_database ? 1 : 0

  project                           = var.project
  name                              = local.database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  # `terraform destroy` leaves the data: deleting a database is a console decision.
  deletion_policy = "ABANDON"

  depends_on = [google_project_service.api]
}

resource "google_firestore_index" "composite" {
  for_each = local.composite_indexes

  project     = var.project
  database    = local.database
  collection  = "${local.prefix}${each.value.collectionGroup}"
  query_scope = each.value.queryScope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = try(fields.value.order, null)
      array_config = try(fields.value.arrayConfig, null)
    }
  }

  depends_on = [google_firestore_database.db]
}

# Fields never queried (JSON blobs, timestamps only read): no single-field indexes, so writes
# index less and no monotonic timestamp index becomes a hotspot. An empty index_config disables
# them all; a non-empty `indexes` list keeps those.
resource "google_firestore_field" "override" {
  for_each = local.field_overrides

  project    = var.project
  database   = local.database
  collection = "${local.prefix}${each.value.collectionGroup}"
  field      = each.value.fieldPath

  index_config {
    dynamic "indexes" {
      for_each = each.value.indexes
      content {
        query_scope  = try(indexes.value.queryScope, null)
        order        = try(indexes.value.order, null)
        array_config = try(indexes.value.arrayConfig, null)
      }
    }
  }

  depends_on = [google_firestore_database.db]
}

# Handled outbox events and old audit entries expire on their own. The TTL field is a timestamp
# no query uses: not indexed either (a monotonic index is a write hotspot).
resource "google_firestore_field" "ttl" {
  for_each = local.ttl_fields

  project    = var.project
  database   = local.database
  collection = "${local.prefix}${each.key}"
  field      = each.value

  ttl_config {}
  index_config {}

  depends_on = [google_firestore_database.db]
}
