"""What every request's log lines carry (`wire.logs`): its trace (from `traceparent` or
`X-Cloud-Trace-Context`, so that Cloud Logging groups a request's lines under its trace),
the task, job, pilot or workflow its path names, and, once authenticated, its caller as
`owner`. Set before the first hook runs and reset when the request ends (waitress reuses its
threads, and context variables would otherwise leak into the next request)."""

from __future__ import annotations

import contextvars
from typing import Any

from flask import Flask, g, request

from skypanda.wire import logs


def install(app: Flask) -> None:
    """Call after the authentication hook is registered: the trace and the path's labels are
    set before it (its own failures are logged with them), the owner after it."""

    def start() -> None:
        given = {k: v for k in logs.TRACE_HEADERS if (v := request.headers.get(k))}
        g.log_tokens = [logs.set_trace(given)]
        found = logs.labels_of(request.view_args or {})
        if found:
            g.log_tokens.append(logs.set_labels(**found))

    def caller() -> None:
        owner = g.get("owner")
        if owner:
            g.log_tokens.append(logs.set_labels(owner=owner))

    def end(_error: BaseException | None) -> None:
        tokens: list[contextvars.Token[Any]] = g.pop("log_tokens", [])
        for token in reversed(tokens):
            token.var.reset(token)

    app.before_request_funcs.setdefault(None, []).insert(0, start)
    app.before_request(caller)
    app.teardown_request(end)
