"""Cloud Storage blobs (logs, outputs): appendable keys on immutable objects.

A Cloud Storage object cannot be appended to, yet a running job's log must be readable while
it runs. So one key is stored as:

    {key}.parts/{seq:020d}-{random}   one object per appended chunk; seq is time.time_ns()
                                      (made strictly increasing per writer), so name order is
                                      write order, and the random suffix keeps two writers in
                                      the same nanosecond apart
    {key}                             the sealed object: parts composed by `seal()`. Its
                                      metadata `skypanda-sealed-through` names the last part
                                      it contains.

`read(key)` is the sealed object (if any) followed by every part named after its
`sealed-through` mark, in name order. The mark makes reads exact while a seal runs: a part that
is already composed but not yet deleted is not read twice, and a part deleted between a reader's
listing and its download makes the reader start again.

`stream(key)` yields the same bytes without holding them: each object in ranged downloads of
at most STREAM_CHUNK, so a reader's memory does not grow with the blob; `last=N` downloads only
the objects (and the range of the first of them) that hold the last N bytes. A part a seal
moved while the stream runs is found again at the same offset: a seal composes the parts in
order after the sealed object, so every byte keeps its offset in the key.

`seal(key)` composes the parts into `{key}` (GCS compose takes at most 32 sources per call, so
it composes in rounds: each round appends up to 31 parts to the object composed so far, moving
the mark forward) and then deletes them. Appends after a seal add new parts, read after the
sealed object; sealing again folds them in. Only the key's writer should seal (the pilot, after
a chunk is written and at the end of the job): parts are sealed through the newest one listed,
so a part another writer had not finished writing when the seal listed them, but named with an
earlier time, would be hidden behind the mark. A concurrent second seal of the same key loses
cleanly (generation preconditions) with `Conflict`.

Cost: every `append` is one object write (a class A operation, about $5 per million), so the
pilot batches a log into one chunk every ~2 s: a job running an hour writes ~1,800 parts. A
`read` is one list, one metadata get and one download per object (the sealed one plus each
unsealed part), so unsealed logs get slower to read as they grow: sealing every few dozen
chunks keeps both reads and the object count small. A seal costs ceil(parts / 31) composes plus
one delete per part.

A log's size is not checked here (it would cost a listing per chunk): it is bounded by the
server's limit per chunk, by its accepting chunks only from the pilot holding the attempt while
it runs, and by the pilot's cap on each attempt's log (the queue's `max_log_mb`).

`uri(key)` is `gs://bucket/key`, where the sealed object lives; until the key is sealed that
object may not exist, so readers go through `read()`.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import google.cloud.storage as storage
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials

from skypanda.domain.errors import BackendUnavailable, Conflict, InvalidInput, NotFound
from skypanda.ports.world import STREAM_CHUNK

__all__ = ["MAX_COMPOSE_SOURCES", "GcsBlobs", "client_from_env"]

MAX_COMPOSE_SOURCES = 32  # a Cloud Storage limit per compose request
SEALED_THROUGH = "skypanda-sealed-through"  # custom metadata on the sealed object
PARTS = ".parts"
_PART_NAME = re.compile(r"^\d{20}-[0-9a-f]{8}$")
_CONTENT_TYPE = "application/octet-stream"
_READ_TRIES = 3


class _PartVanished(Exception):
    """A listed object went away before it was downloaded (a concurrent seal deleted it)."""


def client_from_env(project: str | None = None) -> storage.Client:
    """A storage client for GOOGLE_CLOUD_PROJECT, anonymous when STORAGE_EMULATOR_HOST is set."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        return storage.Client(project=project, credentials=credentials)
    return storage.Client(project=project)


@contextlib.contextmanager
def _backend(action: str, key: str) -> Iterator[None]:
    """Turn Google API and transport errors into BackendUnavailable (retryable)."""
    try:
        yield
    except gexc.PreconditionFailed as e:
        raise Conflict(f"{action} {key!r}: a concurrent writer changed it", key=key) from e
    except (gexc.GoogleAPIError, OSError) as e:  # requests' errors are OSErrors
        raise BackendUnavailable(f"cloud storage failed to {action} {key!r}: {e}", key=key) from e


class GcsBlobs:
    """Blobs port on a Cloud Storage bucket (see the module docstring for the object layout).

    Args:
        client: a `google.cloud.storage.Client` (it stays the caller's to close).
        bucket: the bucket's name.
        create: create the bucket if it does not exist (for emulators and tests).

    Raises:
        BackendUnavailable: `create` was asked and the bucket could not be created.
    """

    def __init__(self, client: storage.Client, bucket: str, *, create: bool = False) -> None:
        self._client = client
        self.bucket_name = bucket
        self._bucket = client.bucket(bucket)
        self._lock = threading.Lock()
        self._last_seq = 0
        if create:
            with _backend("create bucket", bucket), contextlib.suppress(gexc.Conflict):
                client.create_bucket(bucket)

    # -- the Blobs port --------------------------------------------------------------------------

    def append(self, key: str, data: bytes) -> None:
        """Add `data` at the end of `key`: one new part object.

        Raises:
            InvalidInput: a bad key.
            BackendUnavailable: the write failed (or the bucket does not exist).
        """
        _check(key)
        part = self._bucket.blob(f"{key}{PARTS}/{self._next_seq():020d}-{secrets.token_hex(4)}")
        with _backend("append to", key):
            # if_generation_match=0 (create only) makes the write safe for the client to retry.
            part.upload_from_string(data, content_type=_CONTENT_TYPE, if_generation_match=0)

    def read(self, key: str) -> bytes:
        """Everything appended to `key` so far, sealed or not.

        Raises:
            InvalidInput: a bad key.
            NotFound: nothing was ever appended to `key`.
            BackendUnavailable: Cloud Storage failed.
        """
        _check(key)
        for _ in range(_READ_TRIES):
            try:
                return self._read_once(key)
            except _PartVanished:
                continue  # a seal moved the parts into the sealed object: read again
        raise BackendUnavailable(f"{key!r} kept changing while being read", key=key)

    def stream(self, key: str, *, last: int | None = None) -> Iterator[bytes]:
        """Everything appended to `key` when this is called (or its last `last` bytes), in
        chunks of at most STREAM_CHUNK (see the module docstring).

        Raises:
            InvalidInput: a bad key.
            NotFound: nothing was ever appended to `key` (raised here, not at the first chunk).
            BackendUnavailable: Cloud Storage failed (also while the chunks come).
        """
        _check(key)
        layout = self._layout(key)
        end = sum(_size(b) for b in layout)
        start = 0 if last is None else max(0, end - last)
        return self._stream(key, layout, start, end)

    def _stream(self, key: str, layout: list[Any], pos: int, end: int) -> Iterator[bytes]:
        for _ in range(_READ_TRIES):
            try:
                for blob, lo, hi in _ranges(layout, pos, end):
                    with _backend("read", key):
                        chunk = _download(blob, lo, hi)
                    pos += len(chunk)
                    yield chunk
                return
            except _PartVanished:
                layout = self._layout(key)  # a seal moved it: the same bytes, the same offsets
        raise BackendUnavailable(f"{key!r} kept changing while being read", key=key)

    def uri(self, key: str) -> str:
        _check(key)
        return f"gs://{self.bucket_name}/{key}"

    # -- sealing ---------------------------------------------------------------------------------

    def seal(self, key: str) -> None:
        """Compose the key's parts into the object `key` and delete them.

        Idempotent: sealing a key with no new parts changes nothing. Call it from the key's
        writer only (see the module docstring).

        Raises:
            InvalidInput: a bad key.
            NotFound: nothing was ever appended to `key`.
            Conflict: another seal of the same key ran at the same time; read again and retry.
            BackendUnavailable: Cloud Storage failed.
        """
        _check(key)
        with _backend("seal", key):
            parts = self._list_parts(key)
            sealed = self._bucket.get_blob(key)
            if sealed is None and not parts:
                raise NotFound(f"no blob {key!r}", key=key)
            through = _sealed_through(sealed)
            pending = [p for p in parts if _base(p) > through]
            if pending:
                self._compose(key, sealed, pending)
            # Every listed part is now in the sealed object, the ones a crashed seal left too.
            self._bucket.delete_blobs(parts, on_error=lambda _blob: None)

    def _compose(self, key: str, sealed: Any, pending: list[Any]) -> None:
        generation = sealed.generation if sealed is not None else 0
        sources = [sealed] if sealed is not None else []
        while pending:
            room = MAX_COMPOSE_SOURCES - len(sources)
            batch, pending = pending[:room], pending[room:]
            target = self._bucket.blob(key)
            target.content_type = _CONTENT_TYPE
            # The mark moves with the data, in the same write: a reader never sees one
            # without the other.
            target.metadata = {SEALED_THROUGH: _base(batch[-1])}
            # The generation precondition makes a concurrent second seal fail instead of
            # composing the same parts twice.
            target.compose([*sources, *batch], if_generation_match=generation)
            generation = target.generation
            sources = [target]

    # -- internals -------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        # Wall-clock nanoseconds, made strictly increasing for this writer even if the clock
        # steps back, so that one writer's parts always list in the order it wrote them.
        with self._lock:
            self._last_seq = max(time.time_ns(), self._last_seq + 1)
            return self._last_seq

    def _list_parts(self, key: str) -> list[Any]:
        # delimiter="/" keeps the parts of `key` apart from those of keys below `key.parts/`.
        blobs = self._client.list_blobs(self._bucket, prefix=f"{key}{PARTS}/", delimiter="/")
        parts = [b for b in blobs if _PART_NAME.match(_base(b))]
        return sorted(parts, key=_base)

    def _layout(self, key: str) -> list[Any]:
        """The objects holding the key's bytes, in order: the sealed one (if any), then the
        parts named after its mark."""
        with _backend("read", key):
            # Parts are listed before the sealed object is looked at: a seal that runs in
            # between moves its mark past parts this listing holds, and they are skipped;
            # the other order could miss parts sealed and deleted in between.
            parts = self._list_parts(key)
            sealed = self._bucket.get_blob(key)
            if sealed is None and not parts:
                raise NotFound(f"no blob {key!r}", key=key)
            through = _sealed_through(sealed)
            return ([] if sealed is None else [sealed]) + [p for p in parts if _base(p) > through]

    def _read_once(self, key: str) -> bytes:
        layout = self._layout(key)
        with _backend("read", key):
            return b"".join(_download(blob) for blob in layout)


def _download(blob: Any, start: int | None = None, stop: int | None = None) -> bytes:
    """The blob's bytes (from `start` up to, not including, `stop`, when given)."""
    end = None if stop is None else stop - 1  # the client's `end` is inclusive
    try:
        # Pinning the generation makes a replaced sealed object fail rather than mix versions.
        data = blob.download_as_bytes(start=start, end=end, if_generation_match=blob.generation)
        return bytes(data)
    except (gexc.NotFound, gexc.PreconditionFailed) as e:
        raise _PartVanished(blob.name) from e


def _ranges(layout: list[Any], start: int, end: int) -> Iterator[tuple[Any, int, int]]:
    """(object, from, to) pieces of at most STREAM_CHUNK bytes covering the key's bytes from
    `start` to `end`, offsets within each object."""
    offset = 0
    for blob in layout:
        size = _size(blob)
        for at in range(max(start, offset), min(end, offset + size), STREAM_CHUNK):
            yield blob, at - offset, min(at + STREAM_CHUNK, end, offset + size) - offset
        offset += size


def _size(blob: Any) -> int:
    return int(blob.size or 0)


def _sealed_through(sealed: Any) -> str:
    if sealed is None:
        return ""
    return str((sealed.metadata or {}).get(SEALED_THROUGH, ""))


def _base(blob: Any) -> str:
    return str(blob.name).rsplit("/", 1)[-1]


def _check(key: str) -> None:
    """Keys are relative paths, as for FileBlobs; a `*.parts` segment is reserved for parts."""
    segments = key.split("/")
    if not key or key.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise InvalidInput(f"bad blob key {key!r}", key=key)
    if any(s.endswith(PARTS) for s in segments):
        raise InvalidInput(f"bad blob key {key!r}: '{PARTS}' segments are reserved", key=key)
