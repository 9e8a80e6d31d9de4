"""The web monitor: pages people look at, served by the API server under /ui.

    /ui/tasks, /ui/workflows         lists with filters (owner, status, name, time), paged by
                                     cursor, with live job counts
    /ui/tasks/<id>                   job counts by state over time, the error summary, run times,
                                     memory, the jobs (filtered by state and error code), the
                                     spec as submitted, and the owner's actions
    /ui/jobs/<id>                    every attempt (pilot, queue, host, times, codes), the log
                                     (its tail, live while the job runs; whole as a download),
                                     the outputs (size, sha256)
    /ui/workflows/<id>               the task graph drawn with states and loop iterations
    /ui/queues                       queues, pilots by state, the scaler's last decision
    /ui/plots                        throughput per minute by status, failures by code

Pages are rendered on the server (Flask's Jinja2) from the `Views` port; the data of a chart
travels in the page as JSON and is drawn by uPlot, the task graph is laid out by dagre, both
vendored in `static/vendor` with their licences (no CDN: the monitor works offline). Only what
changes while one looks is fetched again (`/ui/live/...`): a running job's log and the counts
of the tasks on screen. Login and sessions: `auth` and `session`.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response

from skypanda.api.monitor import actions, auth, live, pages
from skypanda.api.monitor.auth import finder
from skypanda.api.monitor.charts import TaskCharts
from skypanda.api.monitor.session import Sessions, derive_key
from skypanda.api.monitor.shape import FILTERS
from skypanda.handlers.services import Services

__all__ = ["Sessions", "derive_key", "finder", "install"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'"
)
"""Scripts from the monitor only (the charts' data is JSON, not script); uPlot and dagre set
inline styles."""


def install(app: Flask, svc: Services, sessions: Sessions) -> None:
    """Serve the monitor under /ui on `app` (every route authenticated by the app)."""
    bp = Blueprint(
        "monitor", __name__, url_prefix="/ui", template_folder="templates",
        static_folder="static", static_url_path="/static",
    )  # fmt: skip
    for name, fn in FILTERS.items():
        bp.add_app_template_filter(fn, name)
    auth.routes(bp, sessions)
    auth.error_pages(bp, sessions)
    task_charts = TaskCharts(svc)
    pages.routes(bp, svc, task_charts)
    actions.routes(bp, svc)
    live.routes(bp, svc, task_charts)

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.register_blueprint(bp)
    app.extensions["skypanda.monitor.charts"] = task_charts  # what it keeps, for benchmarks
