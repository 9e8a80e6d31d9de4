"""Cloud Functions entry points: a few lines each, delegating to the event pipeline.

They live in the package so that an installed skypanda can serve them (`skypanda up --backend
emulators` loads this file into functions-framework); `functions/main.py`, the source a Cloud
Functions deployment uploads, re-exports them. Deploy each with `--entry-point NAME`. Triggers:
  submit, dispatch   HTTP (users' routes; pilots' routes and the paths they share:
                     runtime.deployment.HTTP_PARTS)
  split              Pub/Sub topic skypanda-task-registered
  workflow           Pub/Sub topic skypanda-workflow-registered (makes a workflow's jobs)
  scale              Pub/Sub topics skypanda-jobs-activated and skypanda-tick
  sweep              Pub/Sub topic skypanda-tick (Cloud Scheduler, every minute)
  bulk               Pub/Sub topic skypanda-task-bulk (a page of a task-wide action)
  intake             Pub/Sub topic skypanda-submission (tasks and workflows submitted by
                     message: runtime.intake)
  release            Firestore document.created on events/{eventId} (the outbox), and
                     Pub/Sub topic skypanda-job-ended (ends the sweep sent again)

A Pub/Sub function runs the handlers the routing table names for the event's type
(`domain.events.SUBSCRIBERS`): its subscription delivers only the types that name it. The tick
topic has two subscriptions (scale, sweep), so `scale` and `sweep` receive the same tick: each
runs only its own handler.

Importing this module configures logging (`wire.logs`): functions-framework leaves the root
logger at WARNING with no handler, which would drop every info line; on Google Cloud (or
whenever stderr is no terminal) each line is a Cloud Logging structured entry.
"""

from __future__ import annotations

from typing import Any

import functions_framework
from flask import Request, Response

from skypanda.runtime import cloudfn
from skypanda.runtime.deployment import HTTP_PARTS
from skypanda.wire import logs

logs.configure(serverless=True, keep=True)


@functions_framework.http
def submit(request: Request) -> Response:
    return cloudfn.serve_http(request, HTTP_PARTS["submit"])


@functions_framework.http
def dispatch(request: Request) -> Response:
    return cloudfn.serve_http(request, HTTP_PARTS["dispatch"])


@functions_framework.cloud_event
def split(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, only="split")


@functions_framework.cloud_event
def workflow(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, only="workflow")


@functions_framework.cloud_event
def scale(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, only="scale")


@functions_framework.cloud_event
def sweep(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, only="sweep")


@functions_framework.cloud_event
def bulk(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, only="bulk")


@functions_framework.cloud_event
def release(cloud_event: Any) -> None:
    cloudfn.on_release(cloud_event)


@functions_framework.cloud_event
def notify(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, only="notify")


@functions_framework.cloud_event
def chain(cloud_event: Any) -> None:
    cloudfn.on_pubsub(cloud_event, only="chain")


@functions_framework.cloud_event
def intake(cloud_event: Any) -> None:
    cloudfn.on_submission(cloud_event)


@functions_framework.cloud_event
def watch(cloud_event: Any) -> None:
    cloudfn.on_object_finalized(cloud_event)
