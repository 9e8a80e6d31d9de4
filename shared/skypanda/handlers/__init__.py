"""Use cases: one module each. They decode an event or request, ask the domain, write through
ports. Every handler is idempotent: delivery is at least once (Pub/Sub, Eventarc, the local
router after a crash), and every write is compare-and-set, so a repeat changes nothing."""
