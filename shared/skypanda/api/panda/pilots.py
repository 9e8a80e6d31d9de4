"""Which skypanda pilot a PanDA pilot is.

A PanDA pilot's `getJob` names no pilot id of its own: it says who it is by its credential,
its queue (`siteName`) and its host (`node`). Those three name one skypanda pilot, registered
on first contact (the facade plays the launcher: a record made `submitted`, then registered
through `dispatch.register`). Once that pilot has ended (drained, or missed for silence) the
next contact from the same place is a new pilot: generation 2, 3, ... of the same key. The
first generation not ended is found by galloping then bisecting over the generations, so a
node whose pilots came and went k times costs O(log k) reads, and nothing is stored for the
mapping.
"""

from __future__ import annotations

import hashlib

from skypanda.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from skypanda.domain.models import Pilot, Resources
from skypanda.domain.states import PILOT_LIVE, PilotStatus
from skypanda.handlers import dispatch
from skypanda.handlers.services import Services

VERSION = "panda-pilot"
"""The `version` of the skypanda pilots that stand for PanDA pilots."""


def key(principal: str, queue: str, node: str) -> str:
    """The id prefix of the pilots of one credential on one node of one queue."""
    digest = hashlib.blake2b(f"{principal}\0{queue}\0{node}".encode(), digest_size=8)
    return f"pp{digest.hexdigest()}"


def _state(svc: Services, pilot_id: str) -> Pilot | None:
    try:
        return svc.fleet.get_pilot(pilot_id)
    except NotFound:
        return None


def _ended(svc: Services, base: str, generation: int) -> bool:
    pilot = _state(svc, f"{base}-{generation}")
    return pilot is not None and pilot.status not in PILOT_LIVE


def current(svc: Services, base: str) -> int:
    """The first generation of `base` that has not ended (live, or not made yet)."""
    high = 1
    while _ended(svc, base, high):
        high *= 2
    low = high // 2  # ended (or 0); every generation below `high` that is ended is a prefix
    while high - low > 1:
        mid = (low + high) // 2
        if _ended(svc, base, mid):
            low = mid
        else:
            high = mid
    return high


def for_request(
    svc: Services, *, principal: str, queue: str, node: str, memory_mb: int | None
) -> str:
    """The live skypanda pilot of this PanDA pilot, registered now if it is new.

    Raises:
        InvalidInput: the queue is unknown or offline (naming it).
    """
    base = key(principal, queue, node)
    last: Exception | None = None
    for _ in range(3):  # lost a race with a concurrent first contact, or it just ended
        pilot_id = f"{base}-{current(svc, base)}"
        known = _state(svc, pilot_id)
        if known is not None and known.status is PilotStatus.RUNNING:
            return pilot_id
        try:
            if known is None:
                _add(svc, pilot_id, queue, memory_mb)
            dispatch.register(svc, pilot_id=pilot_id, queue=queue, host=node, pid=None,
                              resources=_resources(svc, queue, memory_mb),
                              version=VERSION)  # fmt: skip
            return pilot_id
        except (Conflict, Forbidden) as e:
            last = e
        except InvalidInput as e:
            if getattr(e, "context", {}).get("pilot_id") != pilot_id:
                raise  # an unknown or offline queue; else a concurrent add won: look again
            last = e
    raise Conflict(f"pilot of {node} on {queue} changed while registering: {last}")


def _resources(svc: Services, queue: str, memory_mb: int | None) -> Resources:
    try:
        cap = svc.fleet.get_queue(queue).pilot_resources
    except NotFound as e:
        raise InvalidInput(f"unknown queue {queue!r}", field="siteName") from e
    if memory_mb is None or memory_mb <= 0:
        return cap
    return cap.model_copy(update={"memory_mb": min(memory_mb, cap.memory_mb)})


def _add(svc: Services, pilot_id: str, queue: str, memory_mb: int | None) -> None:
    resources = _resources(svc, queue, memory_mb)
    pilot = Pilot(id=pilot_id, queue=queue, status=PilotStatus.SUBMITTED,
                  created_at=svc.clock.now(), resources=resources, version=VERSION)  # fmt: skip
    svc.fleet.add_pilot(pilot)


def owns(principal: str, queue: str, node: str, pilot_id: str | None) -> bool:
    """Whether the pilot holding a job is this caller's PanDA pilot on this node."""
    return pilot_id is not None and pilot_id.startswith(key(principal, queue, node) + "-")
