"""What a Google Cloud deployment is made of, as data: the one source the Terraform reads.

`manifest()` gathers, from the code itself, the names a deployment must create and wire:

- the Pub/Sub topics, subscriptions and dead letters (`adapters.gcp.topology`, from the routing
  table `domain.events.SUBSCRIBERS`);
- the Cloud Functions: entry point, trigger, size, and how many instances (the scaler and the
  sweep are single: one decision at a time per deployment);
- the front door: which path templates go to `dispatch` (every path a pilot route uses, so a
  URL map that matches paths only is right for every method), the rest to `submit`;
- the Firestore collections with a TTL field, and the secrets and settings each function reads.

`skypanda deploy manifest` writes it to `infra/terraform/skypanda.json`, which the Terraform
decodes (`jsondecode(file(...))`); a test regenerates it and fails when the file is stale, and
another parses the Terraform (python-hcl2) and checks it consumes every part.

Pub/Sub-triggered functions are fed by the topology's own push subscriptions (dead letter after
5 attempts, 1-60 s back-off, authenticated with an OIDC token), exactly as on the emulators:
a gen2 function gets one Eventarc trigger, but `scale` needs two topics (activated jobs and
ticks), and Eventarc's own subscriptions cannot dead-letter. `release` alone keeps an Eventarc
trigger (Firestore `document.created` on the outbox), since only Eventarc delivers Firestore
changes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from skypanda.adapters.gcp.topology import dead_letter_topic_name, topic_name, topology
from skypanda.domain.events import EventType

__all__ = [
    "FUNCTIONS",
    "HTTP_PARTS",
    "FunctionSpec",
    "Route",
    "dispatch_rules",
    "dispatch_templates",
    "function_for",
    "manifest",
    "path_template",
    "routes",
]

HTTP_PARTS: dict[str, tuple[str, ...]] = {
    "submit": ("user", "monitor"),
    # The monitor's routes too: GET /v1/pilots and GET /v1/jobs/ID/log share their paths with
    # pilot routes (register, append_log), and a URL map routes by path, not by method.
    "dispatch": ("pilot", "monitor"),
}
"""The API's route groups each HTTP function serves (`api.app.create_app`)."""

OUTBOX = "events"
OUTBOX_TRIGGER = "google.cloud.firestore.document.v1.created"
"""Created, not written: marking an event handled (or its TTL deletion) invokes nothing."""


@dataclass(frozen=True)
class FunctionSpec:
    """One Cloud Function (gen2). `trigger`: http, pubsub (fed by the topology's push
    subscriptions for `handler`) or firestore (an Eventarc trigger on the outbox)."""

    name: str
    trigger: str
    handler: str | None = None
    memory: str = "512Mi"
    cpu: str = "1"
    timeout_s: int = 60
    max_instances: int = 100
    concurrency: int = 1
    secrets: tuple[str, ...] = ("SKYPANDA_TOKEN", "SKYPANDA_SIGNING_KEY")
    env: tuple[str, ...] = ("SKYPANDA_BUCKET", "SKYPANDA_PREFIX", "SKYPANDA_SERVER_URL")


_HTTP = {"concurrency": 40, "timeout_s": 300}
FUNCTIONS: dict[str, FunctionSpec] = {
    f.name: f
    for f in (
        FunctionSpec("submit", "http", memory="1Gi", **_HTTP),  # type: ignore[arg-type]
        FunctionSpec("dispatch", "http", **_HTTP),  # type: ignore[arg-type]
        FunctionSpec("split", "pubsub", "split", memory="1Gi", timeout_s=540),
        FunctionSpec("workflow", "pubsub", "workflow", memory="1Gi", timeout_s=540),
        # One decision at a time per deployment: two concurrent scalers would both launch the
        # pilots a queue lacks.
        FunctionSpec("scale", "pubsub", "scale", timeout_s=300, max_instances=1),
        FunctionSpec("sweep", "pubsub", "sweep", timeout_s=540, max_instances=1),
        FunctionSpec("bulk", "pubsub", "bulk", timeout_s=540, max_instances=10),
        FunctionSpec("notify", "pubsub", "notify", timeout_s=300, max_instances=20),
        FunctionSpec("chain", "pubsub", "chain", timeout_s=120, max_instances=10),
        FunctionSpec("intake", "pubsub", "intake", memory="1Gi", timeout_s=300),
        # Objects of one rule fill one open batch document: one writer at a time, no contention.
        FunctionSpec("watch", "pubsub", "watch", timeout_s=300, max_instances=1),
        # Outbox documents created (Eventarc), and lost ones re-sent by the sweep (Pub/Sub).
        FunctionSpec("release", "firestore", "release", timeout_s=60),
    )
}
"""Every entry point of `runtime.entrypoints` (and `functions/main.py`), by name."""


def function_for(handler: str) -> str:
    """The function a Pub/Sub subscription for `handler` pushes to."""
    for spec in FUNCTIONS.values():
        if spec.handler == handler:
            return spec.name
    raise KeyError(f"no function serves the handler {handler!r}")


@dataclass(frozen=True)
class Route:
    """One API route: its methods, Flask rule, endpoint, and the function that serves it."""

    methods: tuple[str, ...]
    rule: str
    endpoint: str
    function: str


def routes() -> list[Route]:
    """Every route of the API with the function the front door sends it to."""
    from skypanda.api.app import create_app

    apps = {name: create_app(None, None, parts) for name, parts in HTTP_PARTS.items()}  # type: ignore[arg-type]
    templates = dispatch_templates()
    found: dict[tuple[str, str], Route] = {}
    for app in apps.values():
        for rule in app.url_map.iter_rules():
            methods = tuple(sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}))
            fn = "dispatch" if path_template(rule.rule) in templates else "submit"
            found[(rule.rule, rule.endpoint)] = Route(methods, rule.rule, rule.endpoint, fn)
    return sorted(found.values(), key=lambda r: (r.rule, r.methods))


def dispatch_rules() -> list[str]:
    """The Flask rules whose paths the front door sends to `dispatch`: every pilot route's."""
    from skypanda.api.app import create_app

    app = create_app(None, None, ("pilot",))  # type: ignore[arg-type]
    return sorted({r.rule for r in app.url_map.iter_rules()})


def dispatch_templates() -> list[str]:
    """`dispatch_rules` as the URL map's path templates."""
    return sorted({path_template(rule) for rule in dispatch_rules()})


_VAR = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)>")


def path_template(rule: str) -> str:
    """A Flask rule as a URL map `pathTemplateMatch` (`<x>` -> `{x}`, `<path:x>` -> `{x=**}`).

    Raises:
        ValueError: a converter the URL map cannot express.
    """

    def one(m: re.Match[str]) -> str:
        conv, name = m.group("conv"), m.group("name")
        if conv in (None, "string"):
            return "{" + name + "}"
        if conv == "path":
            return "{" + name + "=**}"
        raise ValueError(f"route {rule}: converter {conv!r} has no path template")

    return _VAR.sub(one, rule)


@dataclass(frozen=True)
class Collection:
    name: str
    ttl_field: str | None = None


COLLECTIONS = (
    Collection("tasks"), Collection("workflows"), Collection("jobs"), Collection("edges"),
    Collection("attempts"), Collection("queues"), Collection("pilots"), Collection("fleet"),
    Collection(OUTBOX, ttl_field="expire_at"),  # set when an event is handled
    Collection("audit", ttl_field="expire_at"),
)  # fmt: skip

SECRETS = {"SKYPANDA_TOKEN": "skypanda-token", "SKYPANDA_SIGNING_KEY": "skypanda-signing-key"}
"""Environment variable -> the Secret Manager secret (after the deployment's prefix)."""


@dataclass(frozen=True)
class Manifest:
    topics: list[str]
    dead_letter_topic: str
    subscriptions: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    dispatch_paths: list[str]
    routes: list[dict[str, Any]]
    collections: list[dict[str, Any]]
    secrets: dict[str, str]
    outbox_document: str
    outbox_trigger: str
    tick_topic: str
    submission_topic: str  # its messages follow schemas/submission.avsc (runtime.intake)
    front_door_default: str


def manifest() -> dict[str, Any]:
    """The deployment's names and wiring (JSON-ready), for SKYPANDA_PREFIX "" (production's):
    a deployment with a prefix puts it before every name (topics, subscriptions, collections,
    functions), as the code does."""
    topo = topology()
    subscriptions = [
        {
            "name": s.name,
            "topic": s.topic,
            "function": None if s.handler is None else function_for(s.handler),
            "dead_letter": s.dead_letter_topic is not None,
        }
        for s in topo.subscriptions
    ]
    functions = [
        {**asdict(f), "secrets": list(f.secrets), "env": list(f.env)} for f in FUNCTIONS.values()
    ]
    return asdict(
        Manifest(
            topics=list(topo.topics),
            dead_letter_topic=dead_letter_topic_name(),
            subscriptions=subscriptions,
            functions=functions,
            dispatch_paths=dispatch_templates(),
            routes=[asdict(r) for r in routes()],
            collections=[asdict(c) for c in COLLECTIONS],
            secrets=SECRETS,
            outbox_document=f"{OUTBOX}/{{eventId}}",
            outbox_trigger=OUTBOX_TRIGGER,
            tick_topic=topic_name(EventType.TICK),
            submission_topic=topic_name(EventType.SUBMISSION),
            front_door_default="submit",
        )
    )
