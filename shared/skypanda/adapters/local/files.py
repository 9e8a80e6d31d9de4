"""File-system blobs (logs, outputs) under `$SKYPANDA_HOME/blobs`, and the system clock."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from skypanda.domain.errors import InvalidInput, NotFound


class FileBlobs:
    """Blobs port on a directory. Keys are relative paths; `..` and absolute keys are refused."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not key or key.startswith("/") or not path.is_relative_to(self.root):
            raise InvalidInput(f"bad blob key {key!r}", key=key)
        return path

    def append(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND makes each write land whole at the end, even from several writers.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as e:
            raise NotFound(f"no blob {key!r}", key=key) from e

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()


class SystemClock:
    def now(self) -> float:
        return time.time()
