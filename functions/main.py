"""Cloud Functions source: the entry points, defined in `skypanda.runtime.entrypoints`.

`skypanda deploy bundle` builds what a deployment uploads from this file: main.py, a
requirements.txt and the skypanda wheel it names. Every function, its trigger and its size are
listed in `skypanda.runtime.deployment.FUNCTIONS` (and `infra/terraform/skypanda.json`):

submit, dispatch (HTTP); split, workflow, scale, sweep, bulk (Pub/Sub push subscriptions);
release (Firestore document.created on the outbox collection, and lost events re-sent on
Pub/Sub).
"""

from skypanda.runtime.entrypoints import (
    bulk,
    dispatch,
    release,
    scale,
    split,
    submit,
    sweep,
    workflow,
)

__all__ = ["bulk", "dispatch", "release", "scale", "split", "submit", "sweep", "workflow"]
