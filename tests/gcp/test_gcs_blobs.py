"""GcsBlobs against fake-gcs-server: parts, reading while written, sealing, errors.

The behaviours every Blobs implementation shares are in tests/contract/test_blobs.py; these are
the ones particular to Cloud Storage's object layout.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from uuid import uuid4

import pytest
from google.cloud import storage

from skypanda.adapters.gcp.gcs_blobs import MAX_COMPOSE_SOURCES, GcsBlobs, client_from_env
from skypanda.domain.errors import BackendUnavailable, InvalidInput, NotFound
from skypanda.ports.world import STREAM_CHUNK
from skypanda.runtime.emulators import Emulator


@pytest.fixture
def client(storage_emulator: Emulator) -> Iterator[storage.Client]:
    made = client_from_env(os.environ["GOOGLE_CLOUD_PROJECT"])
    yield made
    made.close()


@pytest.fixture
def blobs(client: storage.Client) -> GcsBlobs:
    return GcsBlobs(client, f"test-{uuid4().hex}", create=True)


def names(client: storage.Client, blobs: GcsBlobs) -> list[str]:
    return [b.name for b in client.list_blobs(blobs.bucket_name)]


def test_chunks_read_back_in_write_order(blobs: GcsBlobs) -> None:
    # Given a log written in several chunks
    chunks = [f"line {i}\n".encode() for i in range(5)]
    for chunk in chunks:
        blobs.append("logs/j1/1.log", chunk)
    # When it is read
    # Then it is the chunks concatenated in the order they were written
    assert blobs.read("logs/j1/1.log") == b"".join(chunks)


def test_each_chunk_is_one_part_object(client: storage.Client, blobs: GcsBlobs) -> None:
    # Given two appends
    blobs.append("logs/j1/1.log", b"a")
    blobs.append("logs/j1/1.log", b"b")
    # Then two part objects exist under the key's parts prefix, and no final object yet
    stored = names(client, blobs)
    assert len(stored) == 2
    assert all(n.startswith("logs/j1/1.log.parts/") for n in stored)


def test_a_reader_sees_the_chunks_written_so_far(blobs: GcsBlobs) -> None:
    # Given a running job that has written one chunk
    blobs.append("logs/j1/1.log", b"starting\n")
    # When a reader reads it, then the writer goes on
    seen_early = blobs.read("logs/j1/1.log")
    blobs.append("logs/j1/1.log", b"running\n")
    # Then the reader saw what was written so far, and a later read sees more
    assert seen_early == b"starting\n"
    assert blobs.read("logs/j1/1.log") == b"starting\nrunning\n"


def test_seal_composes_more_parts_than_one_compose_takes(
    client: storage.Client, blobs: GcsBlobs
) -> None:
    # Given more parts than one compose call accepts
    chunks = [f"{i:03d}|".encode() for i in range(MAX_COMPOSE_SOURCES * 2 + 5)]
    for chunk in chunks:
        blobs.append("logs/j1/1.log", chunk)
    # When the key is sealed
    blobs.seal("logs/j1/1.log")
    # Then only the sealed object is left, holding every chunk in order
    assert names(client, blobs) == ["logs/j1/1.log"]
    assert blobs.read("logs/j1/1.log") == b"".join(chunks)
    assert client.bucket(blobs.bucket_name).blob("logs/j1/1.log").download_as_bytes() == (
        b"".join(chunks)
    )


def test_appends_after_a_seal_read_after_the_sealed_part(blobs: GcsBlobs) -> None:
    # Given a sealed key
    blobs.append("k", b"one,")
    blobs.append("k", b"two,")
    blobs.seal("k")
    # When more is appended
    blobs.append("k", b"three,")
    # Then it reads after the sealed data, and sealing again folds it in
    assert blobs.read("k") == b"one,two,three,"
    blobs.seal("k")
    blobs.append("k", b"four")
    assert blobs.read("k") == b"one,two,three,four"


def test_seal_with_no_new_parts_changes_nothing(blobs: GcsBlobs) -> None:
    # Given a sealed key
    blobs.append("k", b"data")
    blobs.seal("k")
    # When it is sealed again
    blobs.seal("k")
    # Then it reads the same
    assert blobs.read("k") == b"data"


def test_parts_already_sealed_but_not_deleted_are_read_once(
    client: storage.Client, blobs: GcsBlobs
) -> None:
    # Given a seal that composed its parts but died before deleting them (put back by hand)
    blobs.append("k", b"a")
    blobs.append("k", b"b")
    bucket = client.bucket(blobs.bucket_name)
    parts = [(b.name, b.download_as_bytes()) for b in client.list_blobs(bucket)]
    blobs.seal("k")
    for name, data in parts:
        bucket.blob(name).upload_from_string(data)
    # When the key is read
    # Then the leftover parts are not read twice (the sealed mark covers them)
    assert blobs.read("k") == b"ab"
    # And the next seal removes them
    blobs.seal("k")
    assert names(client, blobs) == ["k"]


def test_a_stream_reads_a_large_sealed_object_in_ranges(blobs: GcsBlobs) -> None:
    # Given a sealed object of 3.5 stream chunks, and a part appended after the seal
    data = bytes(i % 239 for i in range(STREAM_CHUNK * 7 // 2))
    blobs.append("k", data)
    blobs.seal("k")
    blobs.append("k", b"after the seal")
    # When it is streamed
    chunks = list(blobs.stream("k"))
    # Then the sealed object came in ranged downloads of STREAM_CHUNK, then the part
    assert [len(c) for c in chunks] == [STREAM_CHUNK] * 3 + [STREAM_CHUNK // 2, 14]
    assert b"".join(chunks) == data + b"after the seal"
    # And its last bytes are one small range of the sealed object and the part
    assert list(blobs.stream("k", last=20)) == [data[-6:], b"after the seal"]


def test_a_seal_while_a_stream_runs_loses_and_repeats_nothing(blobs: GcsBlobs) -> None:
    # Given a key of five parts, a reader having read the first
    parts = [bytes([65 + i]) * (STREAM_CHUNK // 2) for i in range(5)]
    for part in parts:
        blobs.append("k", part)
    stream = blobs.stream("k")
    first = next(stream)
    # When the writer seals the key (the parts the reader listed are deleted)
    blobs.seal("k")
    # Then the reader goes on from the same offset in the sealed object
    assert first + b"".join(stream) == b"".join(parts)


def test_keys_below_a_key_are_not_mixed_into_it(blobs: GcsBlobs) -> None:
    # Given a key and another key below it as a directory
    blobs.append("logs/j1", b"outer")
    blobs.append("logs/j1/inner", b"inner")
    # Then each reads only its own data
    assert blobs.read("logs/j1") == b"outer"
    assert blobs.read("logs/j1/inner") == b"inner"


def test_reading_an_unknown_key_names_it(blobs: GcsBlobs) -> None:
    # When a key that was never written is read or sealed
    # Then NotFound names the key
    with pytest.raises(NotFound, match="logs/none\\.log") as info:
        blobs.read("logs/none.log")
    assert info.value.context["key"] == "logs/none.log"
    with pytest.raises(NotFound, match="logs/none\\.log"):
        blobs.seal("logs/none.log")


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/./b", "../up", "a/", "a/x.parts/b"])
def test_bad_keys_are_refused(blobs: GcsBlobs, key: str) -> None:
    # When a malformed key (or one using the reserved `.parts` suffix) is used
    # Then every operation refuses it before touching storage
    for call in (lambda: blobs.append(key, b"x"), lambda: blobs.read(key), lambda: blobs.seal(key)):
        with pytest.raises(InvalidInput):
            call()
    with pytest.raises(InvalidInput):
        blobs.uri(key)


def test_uri_names_bucket_and_key(blobs: GcsBlobs) -> None:
    assert blobs.uri("logs/j1/1.log") == f"gs://{blobs.bucket_name}/logs/j1/1.log"


def test_create_is_idempotent(client: storage.Client, blobs: GcsBlobs) -> None:
    # Given a bucket that exists
    # When a second GcsBlobs asks to create it
    again = GcsBlobs(client, blobs.bucket_name, create=True)
    blobs.append("k", b"kept")
    # Then both see the same data
    assert again.read("k") == b"kept"


def test_a_missing_bucket_is_a_backend_failure(client: storage.Client) -> None:
    # Given blobs on a bucket that does not exist (not created)
    blobs = GcsBlobs(client, f"missing-{uuid4().hex}")
    # When writing or reading
    # Then the error is BackendUnavailable (retryable), chained to the Google error
    with pytest.raises(BackendUnavailable) as info:
        blobs.append("k", b"x")
    assert info.value.retryable
    assert info.value.__cause__ is not None
    with pytest.raises(BackendUnavailable):
        blobs.read("k")
