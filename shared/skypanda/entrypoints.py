"""Cloud Functions entry points: a few lines each, delegating to skypanda's handlers.

They live in the package so that an installed skypanda can serve them (`skypanda up --backend
emulators` loads this file into functions-framework); `functions/main.py`, the source a Cloud
Functions deployment uploads, re-exports them. Deploy each with `--entry-point NAME`. Triggers:
  submit, dispatch   HTTP (users' routes; pilots' routes)
  split              Pub/Sub topic skypanda-task-registered
  workflow           Pub/Sub topic skypanda-workflow-registered (makes a workflow's jobs)
  scale              Pub/Sub topics skypanda-jobs-activated and skypanda-tick
  sweep              Pub/Sub topic skypanda-tick (Cloud Scheduler, every minute)
  release            Firestore document.written on events/{eventId} (the outbox)
"""

from __future__ import annotations

from typing import Any

import functions_framework
from flask import Request, Response

from skypanda import cloudfn
from skypanda.handlers import scale as scale_handler
from skypanda.handlers import split as split_handler
from skypanda.handlers import sweep as sweep_handler
from skypanda.handlers import workflow as workflow_handler


@functions_framework.http
def submit(request: Request) -> Response:
    return cloudfn.serve_http(request, ("user", "monitor"))


@functions_framework.http
def dispatch(request: Request) -> Response:
    return cloudfn.serve_http(request, ("pilot",))


@functions_framework.cloud_event
def split(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, split_handler.handle)


@functions_framework.cloud_event
def workflow(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, workflow_handler.handle_registered)


@functions_framework.cloud_event
def scale(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, scale_handler.handle)


@functions_framework.cloud_event
def sweep(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, sweep_handler.handle)


@functions_framework.cloud_event
def release(cloud_event: Any) -> None:
    cloudfn.on_outbox_written(cloud_event)
