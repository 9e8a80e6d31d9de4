"""The Google Cloud backend: Firestore store, Pub/Sub bus, Cloud Storage blobs, emulators."""
