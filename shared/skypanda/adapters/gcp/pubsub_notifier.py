"""The Notifier on Google Cloud: notifications published to the notifications topic
(`topology.notifications_topic_name`), webhooks POSTed over HTTP (`adapters.webhooks_http`).

A message's data is the notification's JSON (the CloudEvent's data) and its attributes are the
CloudEvent's envelope (`ce-id`, `ce-type`, ...: the CloudEvents Pub/Sub binding) plus `type`,
`kind` (task, workflow, job, task_state, workflow_state), `owner`, `task_id`, `workflow_id`,
`job_id` and `status` for subscription filters, e.g.
`attributes.owner = "alice" AND attributes.status = "failed"`, or
`attributes.kind = "job" AND attributes.task_id = "t-..."` for one opted-in task's job ends.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc

from skypanda.adapters.gcp.topology import notifications_topic_name
from skypanda.adapters.webhooks_http import WebhookNotifier
from skypanda.domain.errors import BackendUnavailable
from skypanda.domain.notifications import NotificationCloudEvent
from skypanda.domain.webhooks import TIMEOUT_S

__all__ = ["PubSubNotifier"]


class PubSubNotifier(WebhookNotifier):
    """Notifier port on Pub/Sub (topic) and HTTP (webhooks).

    Args:
        publisher: a `google.cloud.pubsub_v1.PublisherClient` (it stays the caller's to stop).
        project: the Google Cloud project of the topic.
        prefix: the topology's prefix.
    """

    def __init__(
        self,
        publisher: Any,
        project: str,
        *,
        prefix: str = "skypanda",
        timeout: float = TIMEOUT_S,
    ) -> None:
        super().__init__(timeout=timeout)
        self._publisher = publisher
        self._topic = publisher.topic_path(project, notifications_topic_name(prefix))
        self.published = 0

    def publish(self, event: NotificationCloudEvent) -> None:
        """Publish and wait until Pub/Sub accepted it.

        Raises:
            BackendUnavailable: Pub/Sub did not accept it (the end event is redelivered, and
                the notification published again: subscribers recognise it by `ce-id`).
        """
        try:
            self._publisher.publish(self._topic, event.body(), **event.attributes()).result(
                timeout=self._timeout * 3
            )
        except (gexc.GoogleAPIError, TimeoutError) as e:
            raise BackendUnavailable(f"could not publish notification {event.id}: {e}") from e
        self.published += 1
