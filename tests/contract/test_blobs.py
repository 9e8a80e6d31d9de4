"""Specification of the Blobs port (`skypanda.ports.Blobs`), run against every implementation.

FileBlobs runs on a temporary directory; GcsBlobs on fake-gcs-server (a new bucket per test),
started only when its cases run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from skypanda.adapters.gcp.gcs_blobs import GcsBlobs, client_from_env
from skypanda.adapters.local.files import FileBlobs
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.ports import Blobs
from skypanda.ports.world import STREAM_CHUNK


def _file_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blobs]:
    yield FileBlobs(tmp_path / "blobs")


def _gcs_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blobs]:
    request.getfixturevalue("storage_emulator")
    client = client_from_env(os.environ["GOOGLE_CLOUD_PROJECT"])
    try:
        yield GcsBlobs(client, f"contract-{uuid4().hex}", create=True)
    finally:
        client.close()


IMPLEMENTATIONS: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[Blobs]]] = {
    "file": _file_blobs,
    "gcs": _gcs_blobs,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blobs]:
    yield from IMPLEMENTATIONS[request.param](request, tmp_path)


def test_appends_read_back_in_order(blobs: Blobs) -> None:
    # Given a key appended to three times
    for chunk in (b"alpha\n", b"beta\n", b"gamma\n"):
        blobs.append("logs/j1/1.log", chunk)
    # When it is read
    # Then the chunks come back concatenated, in write order
    assert blobs.read("logs/j1/1.log") == b"alpha\nbeta\ngamma\n"


def test_a_read_between_appends_sees_what_was_written(blobs: Blobs) -> None:
    # Given one chunk written
    blobs.append("logs/j1/1.log", b"first\n")
    # When it is read before and after another append
    before = blobs.read("logs/j1/1.log")
    blobs.append("logs/j1/1.log", b"second\n")
    # Then each read is everything written until then
    assert before == b"first\n"
    assert blobs.read("logs/j1/1.log") == b"first\nsecond\n"


def test_keys_are_independent(blobs: Blobs) -> None:
    # Given two keys, one nested below the other's directory
    blobs.append("logs/j1/1.log", b"one")
    blobs.append("logs/j1/2.log", b"two")
    blobs.append("outputs/j1/result.json", b"{}")
    # Then each reads only its own data
    assert blobs.read("logs/j1/1.log") == b"one"
    assert blobs.read("logs/j1/2.log") == b"two"
    assert blobs.read("outputs/j1/result.json") == b"{}"


def test_binary_data_round_trips(blobs: Blobs) -> None:
    data = bytes(range(256)) * 4
    blobs.append("outputs/bin", data)
    assert blobs.read("outputs/bin") == data


def test_an_empty_append_makes_an_empty_blob(blobs: Blobs) -> None:
    # When a key gets only an empty chunk
    blobs.append("logs/quiet.log", b"")
    # Then it exists and is empty
    assert blobs.read("logs/quiet.log") == b""


def test_reading_an_unknown_key_is_not_found(blobs: Blobs) -> None:
    # Given a store with another key
    blobs.append("logs/other.log", b"x")
    # When an unknown key is read
    # Then NotFound names it
    with pytest.raises(NotFound, match="logs/none\\.log"):
        blobs.read("logs/none.log")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a//b", "a/./b", "../escape", "a/../../b"])
def test_bad_keys_are_invalid_input(blobs: Blobs, key: str) -> None:
    # When a key is empty, absolute, or has an empty, '.' or '..' segment
    # Then appending and reading both refuse it
    with pytest.raises(InvalidInput):
        blobs.append(key, b"x")
    with pytest.raises(InvalidInput):
        blobs.read(key)


def test_a_stream_is_the_blob_in_bounded_chunks(blobs: Blobs) -> None:
    # Given a blob of 2.5 stream chunks, written in uneven appends
    data = bytes(i % 253 for i in range(STREAM_CHUNK * 5 // 2))
    for at in range(0, len(data), 700_000):
        blobs.append("logs/j1/1.log", data[at : at + 700_000])
    # When it is streamed
    chunks = list(blobs.stream("logs/j1/1.log"))
    # Then the chunks are the blob, none larger than STREAM_CHUNK
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= STREAM_CHUNK


@pytest.mark.parametrize("last", [0, 1, 10, 299_999, 300_000, 300_001, 10**9])
def test_a_stream_of_the_last_bytes(blobs: Blobs, last: int) -> None:
    # Given a blob written in three appends of 100,000 bytes
    data = bytes(i % 241 for i in range(300_000))
    for at in range(0, len(data), 100_000):
        blobs.append("logs/j1/1.log", data[at : at + 100_000])
    # When its last bytes are streamed
    # Then they are exactly those (all of it when it is shorter)
    assert b"".join(blobs.stream("logs/j1/1.log", last=last)) == data[max(0, len(data) - last) :]


def test_streaming_an_unknown_key_is_not_found_before_any_chunk(blobs: Blobs) -> None:
    # When an unknown key is streamed (or a bad one)
    # Then the call itself raises, before anything is iterated: a server can still say 404
    with pytest.raises(NotFound, match="logs/none\\.log"):
        blobs.stream("logs/none.log")
    with pytest.raises(InvalidInput):
        blobs.stream("../escape")


def test_an_empty_blob_streams_nothing(blobs: Blobs) -> None:
    blobs.append("logs/quiet.log", b"")
    assert b"".join(blobs.stream("logs/quiet.log")) == b""
    assert b"".join(blobs.stream("logs/quiet.log", last=5)) == b""


def test_uri_names_the_key(blobs: Blobs) -> None:
    uri = blobs.uri("logs/j1/1.log")
    assert uri.endswith("/logs/j1/1.log")
    assert uri.split("://", 1)[0] in ("file", "gs")
