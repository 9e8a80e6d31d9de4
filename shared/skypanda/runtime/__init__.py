"""Composition: how skypanda is assembled for each way it runs.

- `local`: the embedded system (SQLite, files, local pilots, the in-process router);
- `gcp`: a Cloud Function instance's services, from its environment;
- `cloudfn`, `entrypoints`: the Cloud Functions glue (what Google Cloud delivers, decoded once);
- `emulated`: the gcp backend on Google's emulators, with `bridge` (Eventarc and load
  balancer stand-ins) and `emulators` (starting them).

Only this layer (and the CLI and functions above it) knows concrete adapters; adapters know
only ports and the domain, and the API knows only handlers.
"""
