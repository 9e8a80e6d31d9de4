"""File-system blobs (logs, outputs) under `$SKYPANDA_HOME/blobs`: private to the user that
runs skypanda (directories 0700, files 0600), since logs and outputs are users' data.

A log (a key under `logs/`) grows no larger than `max_log_bytes`: the pilot caps each attempt's
log far below it (the queue's `max_log_mb`, see skypanda.pilot.logcap), so this is only the
server's backstop against a pilot that does not. It costs one fstat per append.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.fleet import MAX_LOG_MB
from skypanda.ports.world import STREAM_CHUNK

LOG_PREFIX = "logs/"
"""Where logs live (`skypanda.domain.jobflow.log_key`)."""
MAX_LOG_BYTES = 4 * MAX_LOG_MB * 1024 * 1024
"""A log's hard bound: four times the largest cap a queue may set, room for undecodable output
(the pilot sends it as U+FFFD, 3 bytes for each such byte) and the pilot's own notes."""


class FileBlobs:
    """Blobs port on a directory. Keys are relative paths; `..` and absolute keys are refused.

    Args:
        root: the directory (made 0700).
        max_log_bytes: the most a log (a key under `logs/`) may hold; None: no bound.
    """

    def __init__(self, root: Path, *, max_log_bytes: int | None = MAX_LOG_BYTES) -> None:
        self.max_log_bytes = max_log_bytes
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        self._prefix = str(self.root) + os.sep
        self._lock = threading.Lock()
        self._dirs: set[str] = set()

    def _path(self, key: str) -> str:
        # Checked by syntax, not by resolving the path: this runs for every log chunk, and
        # realpath() cost more than the write itself. Keys are made by skypanda, never by users.
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput(f"bad blob key {key!r}", key=key)
        return self._prefix + key

    def append(self, key: str, data: bytes) -> None:
        """Add `data` at the end of `key`.

        Raises:
            InvalidInput: a bad key, or a log that would grow past `max_log_bytes`.
        """
        path = self._path(key)
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            self._make_dirs(parent)
            self._dirs.add(parent)
        bound = self.max_log_bytes if key.startswith(LOG_PREFIX) else None
        with self._lock:
            # O_APPEND makes each write land whole at the end, even from several writers.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                if bound is not None and os.fstat(fd).st_size + len(data) > bound:
                    raise InvalidInput(
                        f"log {key!r} would grow past {bound:,} bytes, the most a log may hold",
                        key=key,
                    )
                os.write(fd, data)
            finally:
                os.close(fd)

    def _make_dirs(self, path: str) -> None:
        """`path` and the folders above it up to the root, each 0700 (`os.makedirs` gives
        its mode to the last folder only)."""
        missing = []
        while path != str(self.root) and not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)

    def read(self, key: str) -> bytes:
        try:
            return Path(self._path(key)).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"no blob {key!r}", key=key) from e

    def stream(self, key: str, *, last: int | None = None) -> Iterator[bytes]:
        """The blob in chunks of STREAM_CHUNK, up to its size when the first chunk is read;
        `last`: only its last `last` bytes (a seek, not a read of the rest).

        Raises:
            InvalidInput: a bad key.
            NotFound: no such blob (raised here, not at the first chunk).
        """
        path = self._path(key)
        if not os.path.isfile(path):  # now, not at the first chunk: the caller may answer 404
            raise NotFound(f"no blob {key!r}", key=key)
        return _chunks(path, last)

    def uri(self, key: str) -> str:
        return "file://" + self._path(key)


def _chunks(path: str, last: int | None) -> Iterator[bytes]:
    """The file from its last `last` bytes (None: from its start) to its size when opened, in
    chunks."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        start = 0 if last is None else max(0, size - last)
        file.seek(start)
        left = size - start
        while left > 0:
            chunk = file.read(min(STREAM_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
