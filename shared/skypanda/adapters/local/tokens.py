"""The Identity port on local tokens: users and their roles in one file, tokens kept only as
hashes.

`<home>/users.json` (mode 0600) lists each user's name, role, the SHA-256 of its token, when it
was made and whether it was revoked. A token is shown once, when it is made
(`skypanda users add`), and never stored: a leaked file gives no one a token. Tokens carry 256
random bits, so a plain (unsalted) hash is enough: there is nothing to guess. The file is
re-read when it changes on disk, so `skypanda users add|revoke` takes effect in a running
server at its next request. Writes are atomic (a new file renamed over the old) and serialised
with a lock file, so two commands at once cannot lose a user.

Credentials that live only as long as one server (the token its local pilots use) are issued
in memory (`issue`) and never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from skypanda.adapters.local.private import locked, write_private
from skypanda.domain.errors import Conflict, InvalidInput, NotFound, Unauthorized
from skypanda.domain.identity import USER_NAME_PATTERN, Principal, Role

_NAME = re.compile(USER_NAME_PATTERN)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class LocalUser:
    name: str
    role: Role
    sha256: str
    created_at: float
    revoked_at: float | None = None


class LocalTokens:
    """Users and tokens of one `$SKYPANDA_HOME` (see the module docstring)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[float, int] | None = None
        self._by_hash: dict[str, LocalUser] = {}
        self._memory: dict[str, Principal] = {}

    # -- Identity -----------------------------------------------------------------------------
    def authenticate(self, token: str) -> Principal:
        digest = token_hash(token)
        with self._lock:
            issued = self._memory.get(digest)
            if issued is not None:
                return issued
            user = self._users_by_hash().get(digest)
        if user is None:
            raise Unauthorized("invalid bearer token (unknown or revoked)")
        return Principal(user.name, frozenset({user.role}))

    def pilot_credential(self, pilot_id: str) -> str | None:
        return None  # see adapters.pilot_credentials

    def issue(self, name: str, role: Role) -> str:
        """A token for this process's lifetime only (never written): e.g. for local pilots."""
        token = secrets.token_urlsafe(32)
        self.accept(token, name, role)
        return token

    def accept(self, token: str, name: str, role: Role) -> None:
        """Accept `token` as `name` for this process's lifetime (e.g. a deployment's token
        from Secret Manager); only its hash is kept."""
        with self._lock:
            self._memory[token_hash(token)] = Principal(name, frozenset({role}))

    # -- users --------------------------------------------------------------------------------
    def add(self, name: str, role: Role = Role.USER, *, token: str | None = None) -> str:
        """Make a user; returns its token (the only time it is seen).

        Raises:
            InvalidInput: a bad name. Conflict: a user of that name exists.
        """
        if not _NAME.match(name):
            raise InvalidInput(f"bad user name {name!r}: letters, digits and . _ @ -", field="name")
        token = token or secrets.token_urlsafe(32)
        with self._edit() as users:
            if any(u.name == name and u.revoked_at is None for u in users):
                raise Conflict(f"user {name} exists; revoke it first to give it a new token")
            users.append(LocalUser(name, role, token_hash(token), time.time()))
        return token

    def revoke(self, name: str) -> None:
        """Raises NotFound: no such (unrevoked) user."""
        with self._edit() as users:
            live = [i for i, u in enumerate(users) if u.name == name and u.revoked_at is None]
            if not live:
                raise NotFound(f"no user {name}")
            for i in live:
                users[i] = LocalUser(**{**asdict(users[i]), "revoked_at": time.time()})

    def users(self) -> list[LocalUser]:
        return [] if self.path is None else _read(self.path)

    # -- file ---------------------------------------------------------------------------------
    def _users_by_hash(self) -> dict[str, LocalUser]:
        if self.path is None:
            return {}
        try:
            st = self.path.stat()
            seen = (st.st_mtime, st.st_size)
        except FileNotFoundError:
            seen = (0.0, 0)
        if seen != self._seen:
            self._by_hash = {u.sha256: u for u in _read(self.path) if u.revoked_at is None}
            self._seen = seen
        return self._by_hash

    @contextlib.contextmanager
    def _edit(self) -> Iterator[list[LocalUser]]:
        if self.path is None:
            raise InvalidInput("this identity keeps no users file")
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.with_suffix(".lock")):
            users = _read(path)
            yield users
            write_private(path, json.dumps({"users": [asdict(u) for u in users]}, indent=1))
        with self._lock:
            self._seen = None


def _read(path: Path) -> list[LocalUser]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise InvalidInput(f"{path}: not a users file ({e})") from e
    try:
        return [
            LocalUser(
                name=str(u["name"]),
                role=Role(u["role"]),
                sha256=str(u["sha256"]),
                created_at=float(u["created_at"]),
                revoked_at=None if u.get("revoked_at") is None else float(u["revoked_at"]),
            )
            for u in raw["users"]
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInput(f"{path}: bad user entry ({e})") from e
