"""File-system blobs (logs, outputs) under `$SKYPANDA_HOME/blobs`, and the system clock."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from skypanda.domain.errors import InvalidInput, NotFound


class FileBlobs:
    """Blobs port on a directory. Keys are relative paths; `..` and absolute keys are refused."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
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
        path = self._path(key)
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        with self._lock:
            # O_APPEND makes each write land whole at the end, even from several writers.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def read(self, key: str) -> bytes:
        try:
            return Path(self._path(key)).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"no blob {key!r}", key=key) from e

    def uri(self, key: str) -> str:
        return "file://" + self._path(key)
