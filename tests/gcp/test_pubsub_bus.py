"""The Pub/Sub topology and PubSubBus against the Pub/Sub emulator.

Each test uses its own name prefix, so tests share the emulator without seeing each other's
topics. The emulator keeps subscriptions' retry, dead-letter and push settings and acts on the
dead-letter policy (see test_a_message_failing_five_times_is_dead_lettered).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import pytest
from google.cloud import pubsub_v1
from google.protobuf import field_mask_pb2
from google.pubsub_v1 import types as pubsub_types

from skypanda.adapters.gcp.pubsub_bus import PubSubBus, decode_message, decode_push
from skypanda.adapters.gcp.topology import (
    ACK_DEADLINE_S,
    MAX_DELIVERY_ATTEMPTS,
    dead_letter_topic_name,
    ensure_topology,
    subscription_name,
    topic_name,
    topology,
)
from skypanda.domain import events as ev
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.events import SUBSCRIBERS, Event, EventType
from skypanda.runtime.emulators import Emulator

# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(pubsub_emulator: Emulator) -> str:
    return os.environ["GOOGLE_CLOUD_PROJECT"]


@pytest.fixture(scope="module")
def publisher(project: str) -> Iterator[pubsub_v1.PublisherClient]:
    client = pubsub_v1.PublisherClient()
    yield client
    client.stop()
    client.transport.close()


@pytest.fixture(scope="module")
def subscriber(project: str) -> Iterator[pubsub_v1.SubscriberClient]:
    client = pubsub_v1.SubscriberClient()
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid4().hex[:12]}"


@pytest.fixture
def ensured(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    prefix: str,
) -> str:
    ensure_topology(publisher, subscriber, project, prefix=prefix)
    return prefix


def pull(
    subscriber: pubsub_v1.SubscriberClient, path: str, want: int, timeout: float = 10.0
) -> list[Any]:
    """Pull (and ack) until `want` messages came or `timeout` passed; the received messages."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        resp = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=5)
        if resp.received_messages:
            ack_ids = [m.ack_id for m in resp.received_messages]
            subscriber.acknowledge(request={"subscription": path, "ack_ids": ack_ids})
        got.extend(resp.received_messages)
    return got


def tick(n: int = 1) -> Event:
    return Event(id=f"tick-{n}", type=EventType.TICK, subject="ticks", data={"n": n})


# --- names (no emulator) -----------------------------------------------------------------------


def test_names_follow_the_event_types() -> None:
    assert topic_name(EventType.TASK_REGISTERED) == "skypanda-task-registered"
    assert topic_name(EventType.TICK) == "skypanda-tick"
    assert topic_name(EventType.JOBS_ACTIVATED, "dev1") == "dev1-jobs-activated"
    assert subscription_name(EventType.TICK, "scale") == "skypanda-tick--scale"
    assert dead_letter_topic_name() == "skypanda-dead-letter"


def test_topology_has_one_subscription_per_route_and_a_dead_letter_hold() -> None:
    # Given the routing table
    # When the topology is derived from it
    topo = topology("skypanda")
    # Then every (event type, handler) route has its subscription on its event's topic
    routes = {(topic_name(t), h) for t, hs in SUBSCRIBERS.items() for h in hs}
    subs = {(s.topic, s.handler) for s in topo.subscriptions if s.handler}
    assert subs == routes
    # And there is a topic per event type, the notifications topic (what ended, for other
    # pipelines) and the dead-letter topic, which is kept
    others = {"skypanda-notifications", "skypanda-dead-letter"}
    assert set(topo.topics) == {topic_name(t) for t in EventType} | others
    assert [s.name for s in topo.subscriptions if s.handler is None] == [
        "skypanda-dead-letter--hold"
    ]


@pytest.mark.parametrize("prefix", ["1abc", "goog", "a b", ""])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(InvalidInput):
        topology(prefix)


def test_push_endpoints_must_name_known_handlers() -> None:
    with pytest.raises(InvalidInput, match="splt"):
        topology("skypanda", {"splt": "http://127.0.0.1:1/"})


def test_decode_message_refuses_foreign_messages() -> None:
    attrs = {"event_id": "e1", "type": str(EventType.TICK), "subject": "ticks"}
    with pytest.raises(InvalidInput, match="subject"):
        decode_message(b"{}", {"event_id": "e1", "type": str(EventType.TICK)})
    with pytest.raises(InvalidInput, match="unknown type"):
        decode_message(b"{}", {**attrs, "type": "com.example.other"})
    with pytest.raises(InvalidInput, match="not JSON"):
        decode_message(b"\xff", attrs)
    with pytest.raises(InvalidInput, match="not a JSON object"):
        decode_message(b"[1]", attrs)
    with pytest.raises(InvalidInput, match="message"):
        decode_push({"subscription": "s"})


# --- topology on the emulator ------------------------------------------------------------------


def test_ensure_topology_creates_everything_and_can_run_again(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    prefix: str,
) -> None:
    # When the topology is ensured twice
    first = ensure_topology(publisher, subscriber, project, prefix=prefix)
    second = ensure_topology(publisher, subscriber, project, prefix=prefix)
    # Then the second run changed nothing and every topic and subscription exists
    assert first == second
    topics = {
        t.name.rsplit("/", 1)[-1]
        for t in publisher.list_topics(request={"project": f"projects/{project}"})
    }
    assert set(first.topics) <= topics
    subs = {
        s.name.rsplit("/", 1)[-1]: s
        for s in subscriber.list_subscriptions(request={"project": f"projects/{project}"})
    }
    assert {s.name for s in first.subscriptions} <= set(subs)
    # And a route subscription carries the ack deadline, retry and dead-letter settings
    sub = subscriber.get_subscription(
        subscription=subscriber.subscription_path(project, f"{prefix}-tick--sweep")
    )
    assert sub.topic == publisher.topic_path(project, f"{prefix}-tick")
    assert sub.ack_deadline_seconds == ACK_DEADLINE_S
    assert sub.retry_policy.minimum_backoff.total_seconds() == 1
    assert sub.retry_policy.maximum_backoff.total_seconds() == 60
    assert sub.dead_letter_policy.dead_letter_topic == publisher.topic_path(
        project, f"{prefix}-dead-letter"
    )
    assert sub.dead_letter_policy.max_delivery_attempts == MAX_DELIVERY_ATTEMPTS
    assert sub.push_config.push_endpoint == ""  # pull


def test_every_route_has_a_subscription_on_its_topic(
    subscriber: pubsub_v1.SubscriberClient, project: str, ensured: str
) -> None:
    for event_type, handlers in SUBSCRIBERS.items():
        for handler in handlers:
            name = subscription_name(event_type, handler, ensured)
            sub = subscriber.get_subscription(
                subscription=subscriber.subscription_path(project, name)
            )
            assert sub.topic.endswith(f"/topics/{topic_name(event_type, ensured)}")


# --- publishing --------------------------------------------------------------------------------


def test_a_published_event_reaches_its_subscriptions_and_decodes_equal(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    ensured: str,
) -> None:
    # Given a bus on an ensured topology
    bus = PubSubBus(publisher, project, prefix=ensured)
    event = ev.task_registered("t-42")
    # When a task.registered event is published
    bus.publish([event])
    # Then the split subscription receives it with its envelope as attributes
    [received] = pull(
        subscriber, subscriber.subscription_path(project, f"{ensured}-task-registered--split"), 1
    )
    attrs = dict(received.message.attributes)
    assert attrs == {"event_id": event.id, "type": str(event.type), "subject": event.subject}
    assert json.loads(received.message.data) == {"task_id": "t-42"}
    # And decoding it gives back the same event
    assert decode_message(received.message.data, attrs) == event


def test_a_tick_reaches_both_of_its_handlers(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    ensured: str,
) -> None:
    # When one tick is published
    PubSubBus(publisher, project, prefix=ensured).publish([tick(7)])
    # Then scale and sweep each receive it
    for handler in ("scale", "sweep"):
        path = subscriber.subscription_path(project, f"{ensured}-tick--{handler}")
        [received] = pull(subscriber, path, 1)
        assert decode_message(received.message.data, received.message.attributes) == tick(7)


def test_the_published_counter_counts_accepted_messages(
    publisher: pubsub_v1.PublisherClient, project: str, ensured: str
) -> None:
    # Given a new bus
    bus = PubSubBus(publisher, project, prefix=ensured)
    assert bus.published == 0
    # When it publishes a batch of three and then one more
    bus.publish([tick(1), ev.jobs_activated("q", 3, "k1"), ev.job_ended("j", 1, "t", "finished")])
    bus.publish([tick(2)])
    # Then it counted four messages
    assert bus.published == 4


def test_publishing_without_a_topology_is_a_backend_failure(
    publisher: pubsub_v1.PublisherClient, project: str, prefix: str
) -> None:
    # Given a prefix whose topics were never created
    bus = PubSubBus(publisher, project, prefix=prefix)
    # When publishing
    # Then BackendUnavailable names the event, chained to Pub/Sub's error, and nothing counts
    with pytest.raises(BackendUnavailable, match="tick-1") as info:
        bus.publish([tick(1)])
    assert info.value.__cause__ is not None
    assert bus.published == 0


# --- what the emulator does with the subscription settings -------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def push_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_push_endpoint_receives_the_event(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    ensured: str,
    push_server: ThreadingHTTPServer,
) -> None:
    # Given the topology ensured again, now with split pushing to an HTTP endpoint
    url = f"http://127.0.0.1:{push_server.server_address[1]}/split"
    ensure_topology(publisher, subscriber, project, prefix=ensured, push_endpoints={"split": url})
    sub = subscriber.get_subscription(
        subscription=subscriber.subscription_path(project, f"{ensured}-task-registered--split")
    )
    assert sub.push_config.push_endpoint == url
    # When a task.registered event is published
    event = ev.task_registered("t-push")
    PubSubBus(publisher, project, prefix=ensured).publish([event])
    # Then the emulator POSTs it to the endpoint, and the push body decodes to the event
    bodies: list[dict[str, Any]] = push_server.bodies  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not bodies and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bodies, "the emulator did not push"
    assert decode_push(bodies[0]) == event
    assert base64.b64decode(bodies[0]["message"]["data"]) == b'{"task_id":"t-push"}'


def test_a_message_failing_five_times_is_dead_lettered(
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    project: str,
    ensured: str,
) -> None:
    # Given the release subscription without its retry backoff (the emulator honours it: five
    # deliveries would take ~7 s, and dead-lettering the message ~7 s more)
    release = subscriber.subscription_path(project, f"{ensured}-job-ended--release")
    subscriber.update_subscription(
        request={
            "subscription": pubsub_types.Subscription(name=release),
            "update_mask": field_mask_pb2.FieldMask(paths=["retry_policy"]),
        }
    )
    # And a job.ended event on it
    event = ev.job_ended("j1", 1, "t1", "failed")
    PubSubBus(publisher, project, prefix=ensured).publish([event])
    # When the handler fails it (nack) on every delivery
    attempts: list[int] = []
    deadline = time.monotonic() + 10
    while len(attempts) < MAX_DELIVERY_ATTEMPTS + 1 and time.monotonic() < deadline:
        resp = subscriber.pull(request={"subscription": release, "max_messages": 1}, timeout=5)
        if not resp.received_messages:
            break  # the emulator dead-letters when the next delivery is due
        for m in resp.received_messages:
            attempts.append(m.delivery_attempt)
            nack = {"subscription": release, "ack_ids": [m.ack_id], "ack_deadline_seconds": 0}
            subscriber.modify_ack_deadline(request=nack)
    # Then it was delivered five times, counted, and then parked on the dead-letter topic
    assert attempts == [1, 2, 3, 4, 5]
    hold = subscriber.subscription_path(project, f"{ensured}-dead-letter--hold")
    [dead] = pull(subscriber, hold, 1)
    assert decode_message(dead.message.data, dead.message.attributes) == event
    assert dead.message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
