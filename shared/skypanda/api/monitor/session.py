"""Monitor sessions: a browser's login kept in one encrypted cookie.

Browsers cannot send `Authorization: Bearer` when they navigate, so the monitor exchanges the
user's token (a local token or an OIDC token: whatever the Identity port accepts) for a session
cookie. The cookie holds the token itself, encrypted and authenticated with Fernet (AES-128-CBC
and HMAC-SHA256, stamped with its issue time; from `cryptography`, already a dependency through
PyJWT) under a server key. That makes sessions stateless: any replica that holds the key (each
Cloud Function instance) reads them, and nothing is stored per session. The token inside is
verified by the same Identity port on every request, so revoking a user, or an OIDC token
expiring, ends the session at its next click. Flask's own session is signed, not encrypted: it
would show the token to whoever reads the cookie.

- The cookie: HttpOnly, SameSite=Strict, Secure under https, Path=/ui, 12 hours (the Fernet
  TTL enforces the same limit server-side). Logout clears it.
- CSRF: each session carries a random token, rendered in every form and checked on every POST
  made with the cookie (SameSite=Strict alone does not cover same-site subdomains).
- Login CSRF: a login form posts only with the nonce of a short-lived cookie that the page
  showing the form set (a form on another site cannot read or send it).
- Login links (`skypanda monitor`): the CLI asks, with its bearer token, for a link whose code
  is the token sealed the same way, valid two minutes and redeemed once per server process.

The key: given by the runtime (derived from the home's pilot key on the embedded backend, so
sessions outlive a restart), else SKYPANDA_SESSION_KEY, else on Google Cloud one derived from
the deployment's shared secret (every function instance reads the same sessions), else random
per process (sessions end with it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from cryptography.fernet import Fernet, InvalidToken

from skypanda.domain.errors import InvalidInput, Unauthorized

COOKIE = "skypanda_session"
LOGIN_COOKIE = "skypanda_login"
SESSION_S = 12 * 3600
"""How long a session lasts after login (a new login starts a new one)."""
LINK_S = 120
"""How long a login link works."""
LOGIN_FORM_S = 3600
"""How long a login form may stay open before its post is refused."""
MIN_KEY_BYTES = 32
KEY_ENV = "SKYPANDA_SESSION_KEY"


def derive_key(secret: bytes, purpose: str = "monitor sessions") -> bytes:
    """A key for `purpose` from another secret (HMAC-SHA256: knowing one reveals nothing of the
    other), e.g. the session key from the home's pilot key."""
    return hmac.digest(secret, f"skypanda {purpose} v1".encode(), "sha256")


def key_from_env() -> bytes | None:
    """SKYPANDA_SESSION_KEY as bytes; else, on Google Cloud, a key derived from the secret
    every function instance of a deployment shares (SKYPANDA_SIGNING_KEY, else the deployment
    token SKYPANDA_TOKEN: as `runtime.gcp` derives the pilots' key); else None.

    Raises:
        InvalidInput: SKYPANDA_SESSION_KEY set but shorter than 32 characters.
    """
    raw = os.environ.get(KEY_ENV)
    if raw:
        if len(raw) < MIN_KEY_BYTES:
            raise InvalidInput(f"{KEY_ENV} must be at least {MIN_KEY_BYTES} characters long")
        return raw.encode()
    if os.environ.get("K_SERVICE"):  # a Cloud Function (Cloud Run) instance
        shared = os.environ.get("SKYPANDA_SIGNING_KEY") or os.environ.get("SKYPANDA_TOKEN")
        if shared:
            return derive_key(shared.encode())
    return None


@dataclass(frozen=True)
class Session:
    token: str
    csrf: str
    name: str  # who logged in (shown; the principal is still read from the token)


class Sessions:
    """Seals and opens session cookies, login-form nonces and login links (see the module
    docstring). Thread-safe."""

    def __init__(self, key: bytes | None = None, *, now: Callable[[], float] = time.time) -> None:
        secret = key or key_from_env() or secrets.token_bytes(MIN_KEY_BYTES)
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret, "monitor fernet")))
        self._now = now
        self._redeemed: TTLCache[str, bool] = TTLCache(100_000, LINK_S * 2)
        self._lock = threading.Lock()

    def _seal(self, kind: str, body: dict[str, Any]) -> str:
        data = json.dumps({"k": kind, **body}).encode()
        return self._fernet.encrypt_at_time(data, int(self._now())).decode()

    def _open(self, kind: str, value: str | None, ttl: int) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            body = json.loads(self._fernet.decrypt_at_time(value.encode(), ttl, int(self._now())))
        except (InvalidToken, ValueError, UnicodeError):
            return None  # forged, from another key, or expired: as if absent
        return body if isinstance(body, dict) and body.get("k") == kind else None

    # -- sessions -----------------------------------------------------------------------------
    def start(self, token: str, name: str) -> str:
        """A new session's cookie value."""
        return self._seal("session", {"t": token, "c": secrets.token_urlsafe(24), "n": name})

    def read(self, cookie: str | None) -> Session | None:
        """The session in `cookie`, or None (absent, forged, expired)."""
        body = self._open("session", cookie, SESSION_S)
        if body is None:
            return None
        return Session(token=str(body["t"]), csrf=str(body["c"]), name=str(body["n"]))

    # -- the login form -----------------------------------------------------------------------
    def login_nonce(self) -> tuple[str, str]:
        """(the nonce for the form, the cookie value that vouches for it)."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._seal("login", {"n": nonce})

    def check_login_nonce(self, nonce: str, cookie: str | None) -> None:
        """Raises: Unauthorized when the form was not shown by this monitor just before."""
        body = self._open("login", cookie, LOGIN_FORM_S)
        if body is None or not nonce or not hmac.compare_digest(str(body["n"]), nonce):
            raise Unauthorized("the login form expired or came from elsewhere: log in again")

    # -- login links --------------------------------------------------------------------------
    def link_code(self, token: str) -> str:
        return self._seal("link", {"t": token})

    def redeem(self, code: str) -> str:
        """The token of a login link's code, once.

        Raises:
            Unauthorized: the code is unknown, expired or was used already.
        """
        body = self._open("link", code, LINK_S)
        if body is None:
            raise Unauthorized("this login link is not valid or has expired: ask for a new one")
        digest = hashlib.sha256(code.encode()).hexdigest()
        with self._lock:
            if digest in self._redeemed:
                raise Unauthorized("this login link was used already: ask for a new one")
            self._redeemed[digest] = True
        return str(body["t"])
