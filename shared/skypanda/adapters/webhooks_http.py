"""Webhook POSTs over HTTP, with the standard library (`urllib`), and the local Notifier.

urllib, not a client library: the need is one POST with a timeout and a bounded read, which
the standard library does without adding a dependency to every install (the embedded default
included). Bounds: http/https only (checked again here), a timeout per request, redirects
not followed (a 3xx is the receiver's answer), at most `MAX_RESPONSE_BYTES` of the answer read,
a few requests at once on a small thread pool so that one slow receiver does not hold the
others. A failure is the attempt's (its status or error), never an exception.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from skypanda.domain.notifications import (
    NotificationCloudEvent,
    check_webhook_url,
    is_metadata_host,
)
from skypanda.domain.webhooks import MAX_RESPONSE_BYTES, TIMEOUT_S, DeliveryAttempt
from skypanda.ports.notifications import WebhookRequest

__all__ = ["WebhookNotifier", "post_one"]

WORKERS = 8
USER_AGENT = "skypanda-webhooks/1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is the answer (urllib then raises it as an HTTPError)


_OPENER = urllib.request.build_opener(_NoRedirect())


def _check_resolved(url: str) -> None:
    """Refuse a host whose name resolves to a link-local address (the metadata server).

    Raises:
        ValueError: it does.
    """
    host = urllib.parse.urlsplit(url).hostname or ""
    port = urllib.parse.urlsplit(url).port
    for *_, sockaddr in socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP):
        if is_metadata_host(str(sockaddr[0])):
            raise ValueError(f"{host} resolves to the link-local address {sockaddr[0]}")


def post_one(req: WebhookRequest, now: float, timeout: float = TIMEOUT_S) -> DeliveryAttempt:
    """POST one request; its attempt (the HTTP status, or the error when none came)."""
    start = time.monotonic()
    status: int | None = None
    error = ""
    try:
        check_webhook_url(req.url)
        _check_resolved(req.url)
        request = urllib.request.Request(
            req.url, data=req.body, method="POST", headers={"User-Agent": USER_AGENT, **req.headers}
        )
        with _OPENER.open(request, timeout=timeout) as answer:
            answer.read(MAX_RESPONSE_BYTES)
            status = int(answer.status)
    except urllib.error.HTTPError as e:
        status = e.code
        error = e.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace")[:200]
    except (OSError, ValueError) as e:  # refused, timed out, DNS, TLS, a bad URL
        error = f"{type(e).__name__}: {e}"[:200]
    return DeliveryAttempt(
        at=now, status=status, error=error, duration_s=round(time.monotonic() - start, 4)
    )


class WebhookNotifier:
    """Notifier port without a topic (the embedded default): webhooks only."""

    def __init__(self, *, timeout: float = TIMEOUT_S) -> None:
        self._timeout = timeout

    def publish(self, event: NotificationCloudEvent) -> None:
        """No topic here: a notification goes to webhooks only."""

    def post(self, requests: Sequence[WebhookRequest], now: float) -> list[DeliveryAttempt]:
        if not requests:
            return []
        with ThreadPoolExecutor(min(WORKERS, len(requests)), "skypanda-webhook") as pool:
            return list(pool.map(lambda r: post_one(r, now, self._timeout), requests))
