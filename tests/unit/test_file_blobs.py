"""FileBlobs' own behaviours (the shared ones are in tests/contract/test_blobs.py): the server's
backstop on a log's size, and streams that read a file a chunk at a time (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skypanda.adapters.local.files import MAX_LOG_BYTES, FileBlobs
from skypanda.domain.errors import InvalidInput
from skypanda.domain.fleet import MAX_LOG_MB
from skypanda.ports.world import STREAM_CHUNK


def test_a_log_cannot_grow_past_the_bound(tmp_path: Path) -> None:
    # Given blobs whose logs may hold 100 bytes
    blobs = FileBlobs(tmp_path, max_log_bytes=100)
    blobs.append("logs/j1/1.log", b"x" * 60)
    # When a chunk would take the log past it
    # Then it is refused whole, naming the log and the bound, and the log is unchanged
    with pytest.raises(InvalidInput, match=r"log 'logs/j1/1.log' would grow past 100 bytes"):
        blobs.append("logs/j1/1.log", b"y" * 41)
    assert blobs.read("logs/j1/1.log") == b"x" * 60
    # And a chunk that fits exactly is taken
    blobs.append("logs/j1/1.log", b"y" * 40)
    assert len(blobs.read("logs/j1/1.log")) == 100


def test_outputs_are_not_bounded_as_logs_are(tmp_path: Path) -> None:
    # Given the same bound
    blobs = FileBlobs(tmp_path, max_log_bytes=100)
    # Then an output (not under logs/) grows past it
    blobs.append("outputs/j1/1/big", b"z" * 1000)
    assert len(blobs.read("outputs/j1/1/big")) == 1000


def test_the_default_bound_leaves_room_for_the_largest_cap() -> None:
    # The largest cap a queue may set, even as U+FFFD (3 bytes per undecodable byte), fits.
    assert MAX_LOG_BYTES > 3 * MAX_LOG_MB * 1024 * 1024


def test_a_stream_reads_up_to_the_size_when_it_started(tmp_path: Path) -> None:
    # Given a log of three stream chunks, streaming begun
    blobs = FileBlobs(tmp_path)
    data = b"a" * STREAM_CHUNK + b"b" * STREAM_CHUNK + b"c" * STREAM_CHUNK
    blobs.append("logs/j1/1.log", data)
    stream = blobs.stream("logs/j1/1.log")
    first = next(stream)
    # When the log grows meanwhile
    blobs.append("logs/j1/1.log", b"more")
    # Then the stream ends where the log ended when it began, a chunk at a time
    assert [first, *stream] == [b"a" * STREAM_CHUNK, b"b" * STREAM_CHUNK, b"c" * STREAM_CHUNK]
