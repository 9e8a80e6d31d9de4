"""One attempt's log, capped: the head sent as it comes, the tail kept, the middle counted.

A payload may write without limit (a loop that prints, a chatty library, `yes`), and a log is
read for its beginning (what ran, on what) and its end (how it stopped). So the pilot caps each
attempt's log at the queue's `max_log_mb` (`cap_bytes`):

    head    the first half of the cap: sent as it comes (the live view of a running job)
    middle  counted and dropped
    tail    the last half of the cap, kept in a ring while the payload runs; sent once it
            ended, after the line `[skypanda: N bytes of output elided]` when the middle was
            not empty

A log of at most the cap is kept exactly as written: nothing is elided, nothing is added.

Memory per job: the output waiting to be sent (at most `pending_max`: beyond it, while the
server is slow or down, output is counted and dropped, and a line says so) plus the ring (half
the cap); when the payload ended, the ring is copied out to be sent, so for a moment a job holds
at most `pending_max` plus the whole cap. `add` costs O(len(chunk)) and never waits for the
server, so the thread draining the payload's pipe never stalls and the payload never blocks on
a full pipe. (A payload that writes faster than the server takes its head, hundreds of MB/s,
may so lose pieces of a head larger than `pending_max`, each loss said by a line.)

Standard library only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import threading
from typing import Any

MB = 1024 * 1024
DEFAULT_CAP_MB = 16
"""Used when the server's queue settings name no cap (a server older than the cap)."""
PENDING_MAX = 8 * MB
"""Output kept per job while the server is slow to take it; beyond this it is counted, dropped."""

__all__ = ["DEFAULT_CAP_MB", "MB", "PENDING_MAX", "CappedLog", "cap_bytes", "elided_line"]


def cap_bytes(queue_cfg: dict[str, Any]) -> int:
    """The log cap in bytes from the queue settings the server sent at registration."""
    value = queue_cfg.get("max_log_mb")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        value = DEFAULT_CAP_MB
    return value * MB


def elided_line(n: int) -> bytes:
    """The marker between a capped log's head and its tail."""
    return f"[skypanda: {n} bytes of output elided]\n".encode()


class CappedLog:
    """One attempt's output, capped at `cap` bytes (see the module docstring); thread-safe.

    The thread watching the payload calls `add`; the reporter `take`s what is ready to send; `end`
    (the payload's output is complete) makes the tail ready too.
    """

    def __init__(self, cap: int, pending_max: int = PENDING_MAX) -> None:
        if cap < 0 or pending_max < 1:
            raise ValueError(f"cap must be >= 0 and pending_max >= 1, not {cap}, {pending_max}")
        self._tail_max = cap // 2
        self._head_left = cap - self._tail_max
        self._pending_max = pending_max
        self._pending = bytearray()
        self._ring = bytearray()  # the tail: filled up to _tail_max, then overwritten in turn
        self._ring_at = 0  # once full, where the oldest byte is (and the next one goes)
        self._elided = 0  # bytes dropped from the middle
        self._late = 0  # bytes dropped because the server did not take them in time
        self._head_ends_line = True
        self._ended = False
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> int:
        """Take a chunk of output; return how many bytes are ready to send."""
        with self._lock:
            if self._ended:  # nothing should come after the end; keep it, bounded
                self._queue(chunk)
                return len(self._pending)
            head = chunk[: self._head_left]
            if head:
                self._head_left -= len(head)
                self._head_ends_line = head.endswith(b"\n")
                self._queue(head)
            rest = chunk[len(head) :]
            if rest:
                self._keep_tail(rest)
            return len(self._pending)

    def _keep_tail(self, data: bytes) -> None:
        """Keep the last _tail_max bytes, each byte copied once: a true ring (a sliding buffer
        moved the whole tail every few chunks, and a 1 GB payload took twice as long)."""
        size = self._tail_max
        if len(data) >= size:  # the ring's whole content is replaced
            self._elided += len(self._ring) + len(data) - size
            self._ring, self._ring_at = bytearray(data[len(data) - size :]), 0
            return
        room = size - len(self._ring)
        if room > 0:  # still filling
            self._ring += data[:room]
            data = data[room:]
        if not data:
            return
        self._elided += len(data)  # each byte now overwrites the oldest one
        at, end = self._ring_at, self._ring_at + len(data)
        if end <= size:
            self._ring[at:end] = data
        else:
            self._ring[at:] = data[: size - at]
            self._ring[: end - size] = data[size - at :]
        self._ring_at = end % size

    def _queue(self, data: bytes) -> None:
        room = self._pending_max - len(self._pending)
        if room >= len(data):
            self._pending += data
            return
        if room > 0:
            self._pending += data[:room]
        self._late += len(data) - max(room, 0)

    def end(self) -> None:
        """The payload's output is complete: the tail (after the marker, if any) is ready to
        send. Idempotent."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            ring, at = self._ring, self._ring_at
            self._ring, self._ring_at = bytearray(), 0
            cut = 0
            if self._elided:
                first = (ring[at : at + 3] + ring[: min(at, 3)])[:3]  # the oldest bytes kept
                cut = _partial_char(first)  # the ring's edge may fall inside a character
                self._elided += cut
                lead = b"" if self._head_ends_line else b"\n"
                self._pending += lead + elided_line(self._elided)
            # Never dropped: it is at most half the cap, and what this job is remembered by.
            with memoryview(ring) as view:
                oldest, newest = view[at:], view[:at]  # in the order they were written
                self._pending += oldest[cut:]
                self._pending += newest[max(0, cut - len(oldest)) :]

    def take(self, limit: int) -> tuple[bytes, int, bool]:
        """Up to `limit` bytes ready to send, the bytes dropped since the last take because
        the server was too slow, and whether this was the last of the log (ended, all taken)."""
        with self._lock:
            data = bytes(self._pending[:limit])
            del self._pending[:limit]
            late, self._late = self._late, 0
            return data, late, self._ended and not self._pending

    def pending(self) -> int:
        """Bytes ready to send."""
        with self._lock:
            return len(self._pending)

    def unsent(self) -> int:
        """Bytes still to send, the tail kept so far included (at most, with its marker)."""
        with self._lock:
            marker = len(elided_line(self._elided)) + 1 if self._elided else 0
            return len(self._pending) + len(self._ring) + marker

    @property
    def elided(self) -> int:
        """Bytes dropped from the middle so far."""
        with self._lock:
            return self._elided


def _partial_char(data: bytes | bytearray) -> int:
    """How many bytes at the start of `data` continue a UTF-8 character cut off before it."""
    n = 0
    while n < min(3, len(data)) and data[n] & 0xC0 == 0x80:
        n += 1
    return n
