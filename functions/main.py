"""Cloud Functions source: the entry points, defined in `skypanda.runtime.entrypoints`.

`skypanda deploy bundle` builds what a deployment uploads from this file: main.py, a
requirements.txt and the skypanda wheel it names. Every function, its trigger and its size are
listed in `skypanda.runtime.deployment.FUNCTIONS` (and `infra/terraform/skypanda.json`): HTTP
(submit, dispatch), Pub/Sub push subscriptions, and release (Firestore document.created on the
outbox collection). This file is written by the code: `skypanda deploy bundle` checks it.
"""

from skypanda.runtime.entrypoints import (
    bulk,
    chain,
    dispatch,
    intake,
    notify,
    release,
    scale,
    split,
    submit,
    sweep,
    watch,
    workflow,
)

__all__ = [
    "bulk",
    "chain",
    "dispatch",
    "intake",
    "notify",
    "release",
    "scale",
    "split",
    "submit",
    "sweep",
    "watch",
    "workflow",
]
