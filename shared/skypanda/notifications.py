"""Verify a skypanda webhook request: standard library only, small enough to copy.

A receiver gets a POST whose body is the notification's JSON (a CloudEvent in binary mode:
`ce-id`, `ce-type`, ... headers) and a header

    Skypanda-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

where the secret is the owner's (`skypanda webhooks secret`). Check it before trusting the body:

    from skypanda.notifications import verify
    event = verify(secret, request.headers, request.get_data())   # raises InvalidSignature

Several `v1=` values may appear (while a secret is being rotated): one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["TOLERANCE_S", "InvalidSignature", "verify"]

TOLERANCE_S = 300
"""How old (or how far in the future) a signed timestamp may be: replays after it fail."""


class InvalidSignature(ValueError):
    """The request is not signed by the secret, or too old: do not trust its body."""


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook request's signature and age; return its CloudEvent, structured
    (`{"id", "type", "source", "subject", "time", ..., "data": {...}}`).

    Args:
        secret: the owner's webhook secret.
        headers: the request's headers (any mapping; names are matched case-insensitively).
        body: the raw request body, exactly as received (before any JSON parsing).
        tolerance: the most seconds between the signed timestamp and `now`.
        now: the current time (seconds since the epoch); the clock's by default.

    Raises:
        InvalidSignature: no or malformed signature header, a timestamp outside the
            tolerance, or no signature that matches.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    header = lower.get("skypanda-signature", "")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    sigs = [v.strip() for k, v in parts if k.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not sigs:
        raise InvalidSignature("missing or malformed Skypanda-Signature header")
    stamp = int(stamps[0])
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        raise InvalidSignature(f"signed at {stamp}: outside the {tolerance} s tolerance")
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        raise InvalidSignature("no signature matches the secret")
    envelope = {k[3:]: v for k, v in lower.items() if k.startswith("ce-")}
    envelope["datacontenttype"] = lower.get("content-type", "application/json")
    envelope["data"] = json.loads(body)
    return envelope
