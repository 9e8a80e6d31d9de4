"""Specification of the pilot's log cap (`skypanda.pilot.logcap`) and of how the reporter sends
a capped log: the head as it comes, the middle counted and dropped, the marker and the tail at
the end; memory bounded; the payload never held up (issue 13, "unbounded logs")."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from skypanda.domain.fleet import MAX_LOG_MB, Queue
from skypanda.pilot.held import HeldJob, Registry
from skypanda.pilot.logcap import MB, CappedLog, cap_bytes, elided_line
from skypanda.pilot.reporting import LOG_CHUNK_BYTES, SEND_MAX, Reporter, job_report
from skypanda.pilot.runner import PayloadResult, run_payload

CAP = 1000  # bytes: head 500, tail 500


def drain(log: CappedLog, limit: int = 10**9) -> bytes:
    """Everything ready to send, taken in pieces of `limit`."""
    out = b""
    while True:
        data, _late, last = log.take(limit)
        out += data
        if not data or last:
            return out


def test_a_log_within_the_cap_is_kept_exactly() -> None:
    for size in (0, 1, CAP // 2, CAP // 2 + 1, CAP - 1, CAP):
        # Given a payload writing `size` bytes, in uneven chunks
        log = CappedLog(CAP)
        data = bytes(i % 251 for i in range(size))
        for at in range(0, size, 77):
            log.add(data[at : at + 77])
        # When its output ended
        sent = drain(log)
        log.end()
        sent += drain(log)
        # Then every byte was sent as written, and nothing was added
        assert sent == data, size
        assert log.elided == 0


def test_a_long_log_keeps_its_head_and_tail_with_a_marker_between() -> None:
    # Given a payload writing 100 times the cap, numbered lines
    log = CappedLog(CAP)
    data = b"".join(b"line %06d\n" % i for i in range(10_000))  # 12 bytes a line
    for at in range(0, len(data), 4096):
        log.add(data[at : at + 4096])
    # When its output ended
    log.end()
    sent = drain(log)
    # Then the log is the first half of the cap, the marker, the last half of the cap
    elided = len(data) - CAP
    assert sent == data[:500] + b"\n" + elided_line(elided) + data[-500:]
    assert b"[skypanda: %d bytes of output elided]\n" % elided in sent
    # And within the cap plus the marker's line
    assert len(sent) <= CAP + len(elided_line(elided)) + 1


def capped(data: bytes, cap: int) -> bytes:
    """What a log of `data` must be under `cap`: the specification, written plainly."""
    if len(data) <= cap:
        return data
    head, tail = data[: cap - cap // 2], data[len(data) - cap // 2 :]
    cut = 0
    while cut < min(3, len(tail)) and tail[cut] & 0xC0 == 0x80:
        cut += 1
    lead = b"\n" if head and not head.endswith(b"\n") else b""
    return head + lead + elided_line(len(data) - cap + cut) + tail[cut:]


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=300), max_size=30),
    cap=st.integers(0, 400),
    take_every=st.integers(1, 5),
)
def test_any_output_in_any_chunks_is_capped_as_specified(
    chunks: list[bytes], cap: int, take_every: int
) -> None:
    # Given any output, in any chunks, taken by the reporter now and then
    log = CappedLog(cap)
    sent = b""
    for i, chunk in enumerate(chunks):
        log.add(chunk)
        if i % take_every == 0:
            sent += drain(log, limit=7)
    # When it ended
    log.end()
    sent += drain(log, limit=50)
    # Then what was sent is the head, the marker and the tail (or all of it, within the cap)
    assert sent == capped(b"".join(chunks), cap)


def test_the_head_is_ready_as_it_comes_and_the_tail_only_at_the_end() -> None:
    log = CappedLog(CAP)
    # Given a payload that wrote less than half the cap
    assert log.add(b"a" * 300) == 300
    # Then it is ready to send (the live view)
    assert drain(log) == b"a" * 300
    # When it writes far more
    for _ in range(100):
        log.add(b"b" * 100)
    # Then only the rest of the head became ready; the tail waits for the end
    assert drain(log) == b"b" * 200
    assert log.pending() == 0
    log.end()
    assert drain(log).endswith(b"b" * 500)


def test_the_marker_starts_its_own_line() -> None:
    # Given a head that ends in the middle of a line
    log = CappedLog(10)
    log.add(b"abcdefghijklmnopqrstuvwxyz")
    log.end()
    # Then the marker is on a line of its own, the tail right after it
    assert drain(log) == b"abcde\n" + elided_line(16) + b"vwxyz"


def test_a_character_cut_by_the_tail_edge_is_not_sent_half() -> None:
    # Given output of two-byte characters, the tail starting inside one
    log = CappedLog(10)
    log.add("é".encode() * 20)  # 40 bytes: head 5 (2.5 characters), tail 5
    log.end()
    text = drain(log).decode("utf-8", errors="replace")
    # Then the tail holds whole characters only, and the cut byte counts as elided
    head, marker, tail = text.split("\n")
    assert tail == "éé"
    assert marker == "[skypanda: 31 bytes of output elided]"
    assert head.startswith("éé")


def test_memory_stays_bounded_however_much_is_written() -> None:
    # Given a payload writing 64 MB with a 1 MB cap, nobody taking what is ready
    log = CappedLog(1 * MB, pending_max=256 * 1024)
    chunk = b"y\n" * 32768
    for _ in range(1024):
        log.add(chunk)
    # Then what waits is at most the pending bound, the rest of the head counted as late
    assert log.pending() == 256 * 1024
    data, late, last = log.take(10**9)
    assert (len(data), late, last) == (256 * 1024, 512 * 1024 - 256 * 1024, False)
    # And at the end only the tail (half the cap) and the marker come
    log.end()
    tail = drain(log)
    assert len(tail) == 512 * 1024 + len(elided_line(log.elided))
    assert log.elided == 64 * MB - 1 * MB


def test_a_slow_server_loses_output_with_a_line_that_says_so() -> None:
    # Given a job whose pending output is full (the server has taken nothing)
    held = HeldJob({"id": "j", "attempt": 1}, log_cap=100 * MB)
    held.log = CappedLog(100 * MB, pending_max=10)
    held.add_output(b"0123456789abcdef")
    # When the reporter takes it
    text = held.take_text(1000)
    # Then it has what fit and a line counting what was dropped
    assert text == "0123456789[skypanda-pilot] 6 bytes of output dropped (server too slow)\n"


@pytest.mark.parametrize("value", [0, MAX_LOG_MB + 1, "16", True, 16.0, 1.5, None])
def test_a_queue_cap_is_a_bounded_whole_number_of_mb(value: Any) -> None:
    with pytest.raises(ValidationError, match="max_log_mb"):
        Queue(name="q", max_log_mb=value)


def test_a_queue_cap_defaults_to_16_mb_and_reaches_the_pilot() -> None:
    # Given a queue as the server sends it to a registering pilot (its whole definition)
    assert Queue(name="q").max_log_mb == 16
    sent = Queue(name="q", max_log_mb=MAX_LOG_MB).model_dump(mode="json")
    # Then the pilot reads the cap from it
    assert cap_bytes(sent) == MAX_LOG_MB * MB


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"max_log_mb": 3}, 3 * MB),
        ({}, 16 * MB),  # a server older than the cap
        ({"max_log_mb": None}, 16 * MB),
        ({"max_log_mb": "3"}, 16 * MB),
        ({"max_log_mb": True}, 16 * MB),
        ({"max_log_mb": 0}, 16 * MB),
    ],
)
def test_the_cap_comes_from_the_queue_settings(settings: dict[str, Any], expected: int) -> None:
    assert cap_bytes(settings) == expected


# --- the reporter sends a capped log -----------------------------------------------------------


class FakeServer:
    """Takes a pilot's calls: log chunks and updates (every report accepted)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        with self.lock:
            if path.endswith("/log"):
                self.calls.append(("log", kw["raw"]))
                return None
            self.calls.append(("update", body))
            return {"results": [{"job_id": r["job_id"], "accepted": True}
                                for r in body["reports"]]}  # fmt: skip


def test_the_reporter_sends_the_tail_in_chunks_before_a_small_final_report() -> None:
    # Given a job with a 4 MB cap whose payload wrote 20 MB of numbered lines
    server = FakeServer()
    registry = Registry(on_empty=lambda: None)
    held = HeldJob({"id": "j1", "attempt": 1}, log_cap=4 * MB)
    registry.add(held)
    data = b"".join(b"line %07d\n" % i for i in range(20 * MB // 13))
    for at in range(0, len(data), 65536):
        held.add_output(data[at : at + 65536])
    held.started = held.ended = True
    reporter = Reporter(server, "p1", registry, 2.0, lambda _: None, lambda _: None)
    # When its final report is sent
    result = PayloadResult("finished", 0, None, "", 0.0, 1.0)
    reporter.start()
    reporter.submit(held, job_report(held, result))
    reporter.close(timeout=30)
    # Then chunks of at most SEND_MAX came first, then one report with a small log
    kinds = [kind for kind, _ in server.calls]
    assert kinds[-1] == "update" and set(kinds[:-1]) == {"log"}
    chunks = [raw for kind, raw in server.calls if kind == "log"]
    assert all(len(c) <= SEND_MAX for c in chunks)
    [report] = server.calls[-1][1]["reports"]
    assert len(report["log"].encode()) <= LOG_CHUNK_BYTES
    # And together they are the head, the marker and the tail: within the cap
    stored = b"".join(chunks) + report["log"].encode()
    head, tail = data[: 2 * MB], data[-2 * MB :]
    lead = b"" if head.endswith(b"\n") else b"\n"
    assert stored == head + lead + elided_line(len(data) - 4 * MB) + tail


@pytest.mark.skipif(sys.platform == "win32", reason="the pilot is POSIX only")
def test_a_payload_writing_far_past_the_cap_is_never_held_up(tmp_path: Path) -> None:
    # Given a job with a 1 MB cap whose payload writes 64 MB, and no one sending its output
    held = HeldJob({"id": "j", "attempt": 1}, log_cap=1 * MB)
    script = "echo first; head -c 67108864 /dev/zero | tr '\\0' y; echo; echo last"
    job = {
        "id": "j", "attempt": 1, "env": {}, "command": ["sh", "-c", script],
        "resources": {"memory_mb": 1000, "cores": 1, "walltime_s": 120},
    }  # fmt: skip
    # When it runs
    result = run_payload(job, tmp_path / "w", on_output=held.add_output, should_stop=lambda: None)
    # Then it finished (its pipe was drained all along), and its log is head, marker, tail
    assert result.status == "finished"
    held.log.end()
    text = held.take_text(10 * MB)
    assert text.startswith("first\nyyy")
    assert text.endswith("yyy\nlast\n")
    match = re.search(r"\n\[skypanda: (\d+) bytes of output elided\]\n", text)
    assert match is not None
    assert int(match.group(1)) == 6 + 64 * MB + 6 - 1 * MB
    assert len(text) == 1 * MB + len(match.group(0))  # the marker's line, and a line break


def test_unsent_counts_the_kept_tail_and_is_never_below_what_the_end_makes_ready() -> None:
    # Given logs under their cap, and over it (a tail kept, a middle elided)
    for written in (b"short\n", bytes(range(256)) * 400):
        log = CappedLog(cap=1000)
        log.add(written)
        # When asked before the end
        before = log.unsent()
        log.end()
        # Then it covers all that the end makes ready to send
        assert before >= log.pending() > 0
        assert before <= log.pending() + len(elided_line(10**9)) + 1
