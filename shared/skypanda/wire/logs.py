"""Structured logs, one format for the server and the pilot: JSON lines that Cloud Logging
parses on Google Cloud, readable text on a terminal.

One JSON object per line, in Cloud Logging's structured-logging shape:

    severity, message, time                        the entry's own fields
    logging.googleapis.com/labels                  task, job, pilot, queue, owner, workflow
    logging.googleapis.com/trace (and spanId)      from the request (X-Cloud-Trace-Context or
                                                   traceparent), as projects/P/traces/T
    logging.googleapis.com/sourceLocation          file, line, function
    stack_trace                                    an exception's traceback (Error Reporting)
    logger, event, and the event's fields          the rest of jsonPayload

Labels come from context variables, set where something knows what the work is about (the
event pipeline from an event's data, the API from a request's path) and read by the formatter:
handlers log plainly and their lines carry the labels. The few lines the monitoring is built on
name an `event` (`LogEvent`) and carry its fields (`log.info(..., extra=event(...))`): the
log-based metrics in infra/terraform/monitoring.tf filter on them (tests check they name what
this module emits). The same events are `announce`d in-process, whatever the log level, to
listeners such as the API server's Prometheus histograms (`api.metrics`).

Standard library only, and Python 3.9: the pilot ships as a stdlib-only zipapp and imports
this. That is why the formatter is written here rather than taken from python-json-logger or
google-cloud-logging's StructuredLogHandler: the pilot cannot have either, and the server uses
the same formatter so that both emit entries of one shape (the Cloud Logging mapping, which is
most of this module, would be ours with python-json-logger too; StructuredLogHandler would bring
google-cloud-logging, its protos and grpc into every install, the embedded default's too).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TextIO

__all__ = [
    "FIELDS",
    "LABELS",
    "LABELS_KEY",
    "TRACE_KEY",
    "CloudFormatter",
    "LogEvent",
    "TextFormatter",
    "announce",
    "configure",
    "current_labels",
    "event",
    "labels",
    "labels_of",
    "listen",
    "on_google_cloud",
    "parse_trace",
    "set_process_labels",
    "set_project",
    "trace",
    "unlisten",
]

LABELS = ("task", "job", "pilot", "queue", "owner", "workflow")
"""The labels an entry may carry (`logging.googleapis.com/labels`)."""
LABELS_KEY = "logging.googleapis.com/labels"
TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"
SOURCE_KEY = "logging.googleapis.com/sourceLocation"
EVENT_KEY = "event"
"""The jsonPayload field naming a monitored event (`LogEvent`)."""


class LogEvent:
    """The events the monitoring counts and measures (the `event` field of their lines)."""

    TASK_SUBMITTED = "task.submitted"
    TASK_ENDED = "task.ended"  # fields: status, duration_s
    JOB_DISPATCHED = "job.dispatched"  # fields: latency_s (activated -> claimed by a pilot)
    JOB_ENDED = "job.ended"  # fields: status, error_code, duration_s
    PILOT_LAUNCHED = "pilot.launched"
    PILOT_ENDED = "pilot.ended"  # fields: status
    SCALER_DECISION = "scaler.decision"  # fields: launch, activated (the queue's depth)
    EVENT_DEAD = "event.dead"  # fields: kind (dead-lettered)


FIELDS: dict[str, tuple[str, ...]] = {
    LogEvent.TASK_SUBMITTED: (),
    LogEvent.TASK_ENDED: ("status", "duration_s"),
    LogEvent.JOB_DISPATCHED: ("latency_s",),
    LogEvent.JOB_ENDED: ("status", "error_code", "duration_s"),
    LogEvent.PILOT_LAUNCHED: (),
    LogEvent.PILOT_ENDED: ("status",),
    LogEvent.SCALER_DECISION: ("launch", "activated"),
    LogEvent.EVENT_DEAD: ("kind",),
}
"""Each event's fields in jsonPayload (besides `event` and `message`)."""

# Names on the LogRecord (`extra=`): prefixed, since `extra` may not shadow a record attribute.
_EVENT_ATTR, _FIELDS_ATTR, _LABELS_ATTR = "skypanda_event", "skypanda_fields", "skypanda_labels"

_labels: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "skypanda_log_labels", default=MappingProxyType({})
)
_trace: contextvars.ContextVar[tuple[str, str, bool] | None] = contextvars.ContextVar(
    "skypanda_log_trace", default=None
)


def event(name: str, labels: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """`extra=` for a log call that records a monitored event, its fields and labels.

    Raises:
        ValueError: a field that `FIELDS` does not list for the event (the metrics would miss
            it), or an unknown label.
    """
    unknown = set(fields) - set(FIELDS.get(name, ()))
    if name not in FIELDS or unknown:
        raise ValueError(f"log event {name!r}: unknown event or fields {sorted(unknown)}")
    return {
        _EVENT_ATTR: name,
        _FIELDS_ATTR: fields,
        _LABELS_ATTR: _clean(labels or {}),
    }


Listener = Callable[[str, Mapping[str, str], Mapping[str, Any]], None]
_listeners: list[Listener] = []


def listen(listener: Listener) -> None:
    """Call `listener(event, labels, fields)` for every monitored event this process records
    (`announce`), whatever the log level (the API server's histograms: `api.metrics`)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unlisten(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def announce(name: str, labels: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    """Tell the listeners an event happened, with its labels (the context's and `labels`).
    A listener that raises is a bug of its own: it must not fail the caller's work."""
    found = {**_process_labels, **_labels.get(), **_clean(labels)}
    for listener in list(_listeners):
        try:
            listener(name, found, fields)
        except Exception:  # reported; the caller's work goes on
            logging.getLogger(__name__).exception("log event listener %r failed", listener)


def _clean(given: Mapping[str, Any]) -> dict[str, str]:
    bad = set(given) - set(LABELS)
    if bad:
        raise ValueError(f"unknown log labels {sorted(bad)}; use {', '.join(LABELS)}")
    return {k: str(v) for k, v in given.items() if v is not None and v != ""}


@contextlib.contextmanager
def labels(**given: Any) -> Iterator[None]:
    """Label every entry logged inside the block (added to the labels already set).

    Raises:
        ValueError: a label not in `LABELS`.
    """
    token = _labels.set({**_labels.get(), **_clean(given)})
    try:
        yield
    finally:
        _labels.reset(token)


def current_labels() -> Mapping[str, str]:
    return _labels.get()


_DATA_LABELS = {
    "task_id": "task",
    "job_id": "job",
    "pilot_id": "pilot",
    "queue": "queue",
    "owner": "owner",
    "workflow_id": "workflow",
}


def labels_of(data: Mapping[str, Any]) -> dict[str, str]:
    """The labels found in an event's data or a request's path arguments (`task_id` -> task,
    `job_id` -> job, `pilot_id` -> pilot, `workflow_id` -> workflow, `queue`, `owner`)."""
    return {
        label: value
        for key, label in _DATA_LABELS.items()
        if isinstance(value := data.get(key), str) and value
    }


TRACE_HEADERS = ("traceparent", "X-Cloud-Trace-Context")
"""The request headers a trace is read from (W3C's first)."""
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d+))?(?:;o=([01]))?")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse_trace(headers: Mapping[str, str]) -> tuple[str, str, bool] | None:
    """(trace id, span id, sampled) from `traceparent` (W3C) or `X-Cloud-Trace-Context`
    (`TRACE/SPAN;o=1`, span in decimal), None when neither is there or well formed."""
    parent = _TRACEPARENT.match((headers.get("traceparent") or "").strip().lower())
    if parent is not None:
        return parent.group(1), parent.group(2), int(parent.group(3), 16) & 1 == 1
    cloud = _CLOUD_TRACE.match((headers.get("X-Cloud-Trace-Context") or "").strip())
    if cloud is not None:
        span = format(int(cloud.group(2)), "016x") if cloud.group(2) else ""
        return cloud.group(1).lower(), span[-16:], cloud.group(3) == "1"
    return None


@contextlib.contextmanager
def trace(headers: Mapping[str, str]) -> Iterator[None]:
    """Every entry logged inside the block carries the request's trace (if it has one)."""
    token = _trace.set(parse_trace(headers))
    try:
        yield
    finally:
        _trace.reset(token)


def set_trace(headers: Mapping[str, str]) -> contextvars.Token[tuple[str, str, bool] | None]:
    """`trace` for frameworks that open and close a request in two hooks (reset the token)."""
    return _trace.set(parse_trace(headers))


def reset_trace(token: contextvars.Token[tuple[str, str, bool] | None]) -> None:
    _trace.reset(token)


def set_labels(**given: Any) -> contextvars.Token[Mapping[str, str]]:
    """`labels` for two-hook frameworks (reset the token with `reset_labels`)."""
    return _labels.set({**_labels.get(), **_clean(given)})


def reset_labels(token: contextvars.Token[Mapping[str, str]]) -> None:
    _labels.reset(token)


_process_labels: dict[str, str] = {}
_project: dict[str, str] = {}


def set_project(project: str | None) -> None:
    """The Google Cloud project that qualifies trace ids (`projects/P/traces/T`), when it is
    known only after logging is configured (the runtimes set no variable for it)."""
    if project:
        _project["id"] = project


def set_process_labels(**given: Any) -> None:
    """Labels for every entry of this process, in every thread (a pilot's id and queue: threads
    do not inherit context variables)."""
    _process_labels.update(_clean(given))


def _labels_for(record: logging.LogRecord) -> dict[str, str]:
    return {**_process_labels, **_labels.get(), **getattr(record, _LABELS_ATTR, {})}


class CloudFormatter(logging.Formatter):
    """A record as one line of JSON in Cloud Logging's structured-logging shape."""

    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.entry(record), default=str, ensure_ascii=False)

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)  # noqa: UP017 (3.9)
        entry: dict[str, Any] = {
            "severity": _severity(record.levelno),
            "message": record.getMessage(),
            "time": when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "logger": record.name,
        }
        name = getattr(record, _EVENT_ATTR, None)
        if name is not None:
            entry[EVENT_KEY] = name
            entry.update(getattr(record, _FIELDS_ATTR, {}))
        found = _labels_for(record)
        if found:
            entry[LABELS_KEY] = found
        traced = _trace.get()
        if traced is not None:
            trace_id, span, sampled = traced
            project = self.project or _project.get("id")
            entry[TRACE_KEY] = f"projects/{project}/traces/{trace_id}" if project else trace_id
            if span:
                entry[SPAN_KEY] = span
            entry[SAMPLED_KEY] = sampled
        entry[SOURCE_KEY] = {
            "file": record.pathname,
            "line": str(record.lineno),
            "function": record.funcName,
        }
        if record.exc_info:
            entry["stack_trace"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.stack_info:
            entry["stack_trace"] = record.stack_info
        return entry


def _severity(levelno: int) -> str:
    for floor, name in ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO")):
        if levelno >= floor:
            return name
    return "DEBUG"


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal: time, level, logger, message, then the labels."""

    def __init__(self, prefix: str = "") -> None:
        super().__init__(f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        found = _labels_for(record)
        if not found:
            return text
        tags = " ".join(f"{k}={v}" for k, v in sorted(found.items()))
        head, sep, tail = text.partition("\n")  # a traceback stays below the tagged line
        return f"{head} [{tags}]{sep}{tail}"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_MARK = "_skypanda_handler"


def on_google_cloud() -> bool:
    """Running where logs go to a collector, not a person: Cloud Functions and Cloud Run
    (K_SERVICE, FUNCTION_TARGET), a Cloud Run job (CLOUD_RUN_JOB), or a Kubernetes pod
    (KUBERNETES_SERVICE_HOST: GKE's agent parses JSON lines into Cloud Logging entries, and
    other clusters' collectors read JSON as well)."""
    env = os.environ
    names = ("K_SERVICE", "CLOUD_RUN_JOB", "FUNCTION_TARGET", "KUBERNETES_SERVICE_HOST")
    return any(env.get(name) for name in names)


def wants_json(serverless: bool = False, stream: TextIO | None = None) -> bool:
    """JSON when $SKYPANDA_LOG_FORMAT says json, or on Google Cloud, or (`serverless`: under
    functions-framework) when stderr is no terminal; text when it says text, or else."""
    chosen = os.environ.get("SKYPANDA_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "text"):
        return chosen == "json"
    if chosen:
        raise ValueError(f"SKYPANDA_LOG_FORMAT={chosen!r}: use json or text")
    if on_google_cloud():
        return True
    if serverless:
        out = stream if stream is not None else sys.stderr
        return not (hasattr(out, "isatty") and out.isatty())
    return False


def configure(
    *,
    serverless: bool = False,
    json_lines: bool | None = None,
    project: str | None = None,
    level: str | None = None,
    prefix: str = "",
    keep: bool = False,
) -> logging.Handler:
    """One handler on the root logger, writing to stderr: JSON (`wants_json`) or text.

    The handler shows skypanda's lines from $SKYPANDA_LOG_LEVEL, else `level`, else INFO on;
    other libraries' from WARNING. Calling it again replaces the handler it installed, unless
    `keep`: then the one installed stays (an entry module configures logging at import, and
    `skypanda up` that loads it in-process has configured its own already). Under
    functions-framework (`serverless`), Python's warnings are logged too, as WARNING entries.
    `project` (default: $GOOGLE_CLOUD_PROJECT or $GCP_PROJECT) qualifies trace ids.

    Raises:
        ValueError: an unknown $SKYPANDA_LOG_FORMAT or level.
    """
    root = logging.getLogger()
    mine = [h for h in root.handlers if getattr(h, _MARK, False)]
    if keep and mine:
        return mine[0]
    as_json = wants_json(serverless) if json_lines is None else json_lines
    chosen = (os.environ.get("SKYPANDA_LOG_LEVEL") or level or "INFO").upper()
    if chosen not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"log level {chosen!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    handler = _Stderr()
    handler.setLevel(chosen)
    if as_json:
        env = os.environ
        project = project or env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCP_PROJECT") or None
        handler.setFormatter(CloudFormatter(project))
    else:
        handler.setFormatter(TextFormatter(prefix))
    setattr(handler, _MARK, True)
    for old in mine:
        root.removeHandler(old)
    root.addHandler(handler)
    if serverless:
        logging.captureWarnings(True)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    logging.getLogger("skypanda").setLevel(chosen)
    return handler
