"""File-system blobs (logs, outputs) under `$SKYPANDA_HOME/blobs`: private to the user that
runs skypanda (directories 0700, files 0600), since logs and outputs are users' data."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from skypanda.domain.errors import InvalidInput, NotFound


class FileBlobs:
    """Blobs port on a directory. Keys are relative paths; `..` and absolute keys are refused."""

    def __init__(self, root: Path) -> None:
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
        path = self._path(key)
        parent = os.path.dirname(path)
        if parent not in self._dirs:
            self._make_dirs(parent)
            self._dirs.add(parent)
        with self._lock:
            # O_APPEND makes each write land whole at the end, even from several writers.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
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

    def uri(self, key: str) -> str:
        return "file://" + self._path(key)
