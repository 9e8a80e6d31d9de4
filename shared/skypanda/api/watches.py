"""Watch-rule routes: add (`POST /v1/watches`, JSON), list (`GET /v1/watches`: the caller's;
an admin's `?all=1`: everyone's), remove (`DELETE /v1/watches/<name>`). Users manage their own
rules, admins any (`handlers.watch`)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, jsonify, request

from skypanda.api import bodies
from skypanda.domain.watch import WatchRule
from skypanda.handlers import watch
from skypanda.handlers.services import Services

RECENT_BATCHES = 5
SERVER_FIELDS = ("owner", "uid", "created_at")


def view(svc: Services, rule: WatchRule) -> dict[str, Any]:
    """The rule as JSON, with its most recent batches."""
    batches = svc.store.get_batches(rule.uid, RECENT_BATCHES)
    return {
        **rule.model_dump(mode="json", by_alias=True),
        "batches": [
            {"seq": b.seq, "status": str(b.status), "count": b.count, "first_at": b.first_at,
             "task_id": b.task_id, "reason": b.reason}
            for b in batches
        ],
    }  # fmt: skip


def routes(app: Flask, svc: Services) -> None:
    @app.post("/v1/watches")
    def create_watch() -> tuple[Response, int]:
        body = bodies.json_object()
        for name in SERVER_FIELDS:
            body.pop(name, None)  # set by the server
        rule = watch.add_rule(svc, bodies.validate(WatchRule, body), g.owner)
        return jsonify(view(svc, rule)), 201

    @app.get("/v1/watches")
    def list_watches() -> Response:
        everyone = g.admin and request.args.get("all") in ("1", "true")
        rules = watch.list_rules(svc, None if everyone else g.owner)
        return jsonify({"watches": [view(svc, r) for r in rules]})

    @app.delete("/v1/watches/<watch_name>")
    def remove_watch(watch_name: str) -> Response:
        watch.remove_rule(svc, watch_name, g.owner, admin=g.admin)
        return jsonify({"removed": watch_name})
