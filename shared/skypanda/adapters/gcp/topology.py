"""The Pub/Sub topology, as data, and `ensure_topology` to make it exist.

    {prefix}-{kind}                       one topic per EventType (dev.skypanda.task.registered
                                          -> skypanda-task-registered, dev.skypanda.tick ->
                                          skypanda-tick)
    {topic}--{handler}                    one subscription per name in domain.events.SUBSCRIBERS
                                          (skypanda-tick--scale, skypanda-tick--sweep)
    {prefix}-dead-letter                  where a message goes after MAX_DELIVERY_ATTEMPTS
    {prefix}-dead-letter--hold            keeps dead letters for inspection (a topic without a
                                          subscription drops what it receives)

Every route subscription redelivers with exponential backoff (1 s to 60 s), gives a handler
ACK_DEADLINE_S to finish, and after 5 failed deliveries parks the message on the dead-letter
topic: a poison event stops costing invocations. Handlers are idempotent (compare-and-set
writes), so a redelivery after a slow ack changes nothing.

On Google Cloud, infra/ (Terraform) owns these resources, and the Pub/Sub service agent needs
publisher rights on the dead-letter topic and subscriber rights on the subscriptions for dead
lettering to work. `ensure_topology` is for the emulator and for development projects.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.protobuf import duration_pb2, field_mask_pb2
from google.pubsub_v1 import types as pubsub_types

from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.events import SUBSCRIBERS, EventType

__all__ = [
    "ACK_DEADLINE_S",
    "MAX_BACKOFF_S",
    "MAX_DELIVERY_ATTEMPTS",
    "MIN_BACKOFF_S",
    "SubscriptionSpec",
    "Topology",
    "dead_letter_topic_name",
    "ensure_topology",
    "notifications_topic_name",
    "subscription_name",
    "topic_name",
    "topology",
]

ACK_DEADLINE_S = 60
MIN_BACKOFF_S = 1
MAX_BACKOFF_S = 60
MAX_DELIVERY_ATTEMPTS = 5  # the smallest value Pub/Sub accepts
EVENT_NAMESPACE = "dev.skypanda."
DEAD_LETTER_HOLD = "hold"

# Pub/Sub names: start with a letter, then letters, digits and - _ . ~ + %; 3 to 255 long.
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.~+%-]{2,254}$")
# What ensure_topology rewrites on a subscription that already exists.
_MUTABLE = ["ack_deadline_seconds", "retry_policy", "dead_letter_policy", "push_config"]


@dataclass(frozen=True)
class SubscriptionSpec:
    """One subscription: the handler `handler` receiving `topic`'s messages (None: kept to
    be inspected, as dead letters are)."""

    name: str
    topic: str
    handler: str | None
    push_endpoint: str | None = None
    dead_letter_topic: str | None = None


@dataclass(frozen=True)
class Topology:
    topics: tuple[str, ...]  # the event topics and the dead-letter topic
    subscriptions: tuple[SubscriptionSpec, ...]
    dead_letter_topic: str


def topic_name(event_type: EventType, prefix: str = "skypanda") -> str:
    """The topic carrying `event_type`: the type after `dev.skypanda.`, dots made dashes."""
    kind = str(event_type).removeprefix(EVENT_NAMESPACE)
    return _checked(f"{prefix}-{kind.replace('.', '-')}")


def subscription_name(event_type: EventType, handler_name: str, prefix: str = "skypanda") -> str:
    """The subscription feeding `event_type` to the handler module `handler_name`."""
    return _checked(f"{topic_name(event_type, prefix)}--{handler_name}")


def dead_letter_topic_name(prefix: str = "skypanda") -> str:
    return _checked(f"{prefix}-dead-letter")


def notifications_topic_name(prefix: str = "skypanda") -> str:
    """Where skypanda publishes what ended (and rejected submissions) for other pipelines:
    a topic with no subscription of skypanda's own."""
    return _checked(f"{prefix}-notifications")


def topology(prefix: str = "skypanda", push_endpoints: Mapping[str, str] | None = None) -> Topology:
    """The topics and subscriptions skypanda needs, from the routing table.

    Args:
        prefix: starts every name (one per deployment, or per test).
        push_endpoints: handler module name -> URL; those handlers' subscriptions push to it.

    Raises:
        InvalidInput: a name Pub/Sub would refuse, or a push endpoint for no known handler.
    """
    push_endpoints = dict(push_endpoints or {})
    known = {name for names in SUBSCRIBERS.values() for name in names}
    if unknown := sorted(set(push_endpoints) - known):
        raise InvalidInput(
            f"push endpoints for unknown handlers {unknown}; known: {sorted(known)}",
            field="push_endpoints",
        )
    dead_letter = dead_letter_topic_name(prefix)
    subscriptions = [
        SubscriptionSpec(
            name=subscription_name(event_type, name, prefix),
            topic=topic_name(event_type, prefix),
            handler=name,
            push_endpoint=push_endpoints.get(name),
            dead_letter_topic=dead_letter,
        )
        for event_type, names in SUBSCRIBERS.items()
        for name in names
    ]
    subscriptions.append(
        SubscriptionSpec(_checked(f"{dead_letter}--{DEAD_LETTER_HOLD}"), dead_letter, None)
    )
    topics = (*(topic_name(t, prefix) for t in EventType), notifications_topic_name(prefix),
              dead_letter)  # fmt: skip
    return Topology(topics, tuple(subscriptions), dead_letter)


def ensure_topology(
    publisher: Any,
    subscriber: Any,
    project: str,
    *,
    prefix: str = "skypanda",
    push_endpoints: dict[str, str] | None = None,
) -> Topology:
    """Create the topology's topics and subscriptions in `project`; run it as often as you like.

    A topic or subscription that exists is kept; an existing subscription gets this
    topology's ack deadline, retry, dead-letter and push settings (so a changed push endpoint
    takes effect). Its topic cannot change.

    Args:
        publisher: a `pubsub_v1.PublisherClient`.
        subscriber: a `pubsub_v1.SubscriberClient`.

    Raises:
        InvalidInput: see `topology()`.
        BackendUnavailable: Pub/Sub refused or failed.
    """
    wanted = topology(prefix, push_endpoints)
    try:
        for topic in wanted.topics:
            with contextlib.suppress(gexc.AlreadyExists):
                publisher.create_topic(name=publisher.topic_path(project, topic))
        for spec in wanted.subscriptions:
            _ensure_subscription(publisher, subscriber, project, spec)
    except gexc.GoogleAPIError as e:
        raise BackendUnavailable(f"could not create the Pub/Sub topology {prefix!r}: {e}") from e
    return wanted


def _ensure_subscription(
    publisher: Any, subscriber: Any, project: str, spec: SubscriptionSpec
) -> None:
    subscription = _subscription(publisher, subscriber, project, spec)
    try:
        subscriber.create_subscription(request=subscription)
    except gexc.AlreadyExists:
        mask = field_mask_pb2.FieldMask(paths=_MUTABLE)
        subscriber.update_subscription(request={"subscription": subscription, "update_mask": mask})


def _subscription(
    publisher: Any, subscriber: Any, project: str, spec: SubscriptionSpec
) -> pubsub_types.Subscription:
    subscription = pubsub_types.Subscription(
        name=subscriber.subscription_path(project, spec.name),
        topic=publisher.topic_path(project, spec.topic),
        ack_deadline_seconds=ACK_DEADLINE_S,
        retry_policy=pubsub_types.RetryPolicy(
            minimum_backoff=duration_pb2.Duration(seconds=MIN_BACKOFF_S),
            maximum_backoff=duration_pb2.Duration(seconds=MAX_BACKOFF_S),
        ),
        # An empty push config means pull.
        push_config=pubsub_types.PushConfig(push_endpoint=spec.push_endpoint or ""),
    )
    if spec.dead_letter_topic:
        subscription.dead_letter_policy = pubsub_types.DeadLetterPolicy(
            dead_letter_topic=publisher.topic_path(project, spec.dead_letter_topic),
            max_delivery_attempts=MAX_DELIVERY_ATTEMPTS,
        )
    return subscription


def _checked(name: str) -> str:
    if not _NAME.match(name) or name.startswith("goog"):
        raise InvalidInput(
            f"bad Pub/Sub name {name!r}: start with a letter, use [A-Za-z0-9_.~+%-]", name=name
        )
    return name
