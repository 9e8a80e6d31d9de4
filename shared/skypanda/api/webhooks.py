"""Webhook routes (`/v1/webhooks`): an owner's webhooks, signing secret and deliveries. A user
manages their own (and adds webhooks to their own tasks and workflows: `task_id`,
`workflow_id`); an admin anyone's (`owner` in the body or query)."""

from __future__ import annotations

from flask import Flask, Response, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field

from skypanda.api.bodies import model_body
from skypanda.api.params import int_arg
from skypanda.domain.models import jsonable
from skypanda.domain.notifications import WebhookUrl
from skypanda.domain.values import Flag
from skypanda.domain.webhooks import Delivery
from skypanda.handlers import webhooks
from skypanda.handlers.services import Services


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AddBody(_Body):
    url: WebhookUrl
    owner: str | None = Field(default=None, max_length=200)
    task_id: str | None = Field(default=None, min_length=1, max_length=200)
    workflow_id: str | None = Field(default=None, min_length=1, max_length=200)


class SecretBody(_Body):
    rotate: Flag = False
    owner: str | None = Field(default=None, max_length=200)


def routes(app: Flask, svc: Services) -> None:
    @app.get("/v1/webhooks")
    def list_webhooks() -> Response:
        hooks = webhooks.listed(svc, g.owner, owner=request.args.get("owner"), admin=g.admin)
        return jsonify([jsonable(h) for h in hooks])

    @app.post("/v1/webhooks")
    def add_webhook() -> tuple[Response, int]:
        body = model_body(AddBody)
        hook, secret = webhooks.add(
            svc, g.owner, body.url, owner=body.owner, admin=g.admin,
            task_id=body.task_id, workflow_id=body.workflow_id,
        )  # fmt: skip
        return jsonify({**jsonable(hook), "secret": secret}), 201

    @app.delete("/v1/webhooks/<hook_id>")
    def remove_webhook(hook_id: str) -> Response:
        return jsonify(jsonable(webhooks.remove(svc, g.owner, hook_id, admin=g.admin)))

    @app.post("/v1/webhooks/secret")
    def webhook_secret() -> Response:
        body = model_body(SecretBody)
        secret = webhooks.secret(svc, g.owner, owner=body.owner, admin=g.admin, rotate=body.rotate)
        return jsonify({"owner": body.owner or g.owner, "secret": secret})

    @app.get("/v1/webhooks/deliveries")
    def list_deliveries() -> Response:
        found = webhooks.deliveries(
            svc, g.owner, subject=request.args.get("subject"), admin=g.admin,
            limit=int_arg("limit", 50, 1, 500),
        )  # fmt: skip
        return jsonify([_delivery(d) for d in found])


def _delivery(d: Delivery) -> dict[str, object]:
    """A delivery without its body and headers (they are the notification: see its subject)."""
    return {k: v for k, v in jsonable(d).items() if k not in ("body", "headers")}
