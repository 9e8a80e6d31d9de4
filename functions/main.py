"""Cloud Functions source: the entry points, defined in `skypanda.runtime.entrypoints`.

    gcloud functions deploy NAME --gen2 --runtime python311 --source functions \
        --entry-point NAME ...

submit, dispatch (HTTP); split, workflow, scale, sweep (Pub/Sub); release (Firestore
document.written on the outbox collection). See skypanda/entrypoints.py for each trigger.
"""

from skypanda.runtime.entrypoints import dispatch, release, scale, split, submit, sweep, workflow

__all__ = ["dispatch", "release", "scale", "split", "submit", "sweep", "workflow"]
