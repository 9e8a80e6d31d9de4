"""Credentials scoped to one pilot: a single-use launch credential, then a short-lived one
renewed by its heartbeats.

Both are HS256 JSON Web Tokens (PyJWT) this server signs with one key, naming the pilot (`sub`)
and expiring; their audiences differ, so one is never taken for the other:

    launch  (`aud` skypanda-launch, `launch_ttl_s`, default 1 h)  what a launcher hands the
            pilot it starts. It may only register, only as that pilot id, and only once: while
            the pilot record is still `submitted` (handlers.dispatch.register). The hour covers
            a Cloud Run execution or a GKE pod waiting for capacity, and a push-mode pilot
            queued with its job; past it, the pilot cannot register and exits (the scaler
            retires its record and launches pilots as the queue still needs).
    pilot   (`aud` skypanda-pilot, `ttl_s`, default 10 min)  the answer to registering, and
            to every heartbeat. With it the pilot may call only its own pilot routes and log or
            upload only for jobs it holds (api.access and the job routes check).

A copy that leaks is worth little: a launch credential is spent by the registration that
precedes any payload, and a pilot credential acts for one pilot until it expires.

`WithPilotCredentials` puts these in front of the identities that know the people: a JWT this
server issued is a pilot's (or its launch credential); a JWT of the configured OIDC issuer goes
to it (`adapters.oidc`); any other token to the local tokens. A JWT of an issuer not trusted
here is refused, naming it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from skypanda.domain.errors import Unauthorized
from skypanda.domain.identity import Principal, Role
from skypanda.ports import Identity

ISSUER = "skypanda"
AUDIENCE = "skypanda-pilot"
LAUNCH_AUDIENCE = "skypanda-launch"
DEFAULT_TTL_S = 1200.0
"""Longer than a pilot's outage budget (600 s): a pilot that rides out an outage still holds a
valid credential when the server answers again."""
DEFAULT_LAUNCH_TTL_S = 3600.0
VERIFIED_KEPT = 4096
"""Credentials remembered as verified (`PilotCredentials.authenticate`): a few per pilot."""


class PilotCredentials:
    """Issues and verifies pilots' launch credentials and pilot credentials (one key)."""

    def __init__(
        self,
        key: bytes,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        launch_ttl_s: float = DEFAULT_LAUNCH_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) < 32:
            raise ValueError("a pilot credential key needs at least 32 bytes")
        if ttl_s <= 0 or launch_ttl_s <= 0:
            raise ValueError("credential lifetimes must be positive")
        self._key = key
        self._ttl_s = ttl_s
        self._launch_ttl_s = launch_ttl_s
        self._clock = clock
        # token -> (who, its exp): a pilot sends the same credential with every call, and
        # verifying it (two base64 decodes, an HMAC, the claims) costs a fraction of a
        # millisecond per request. The exact string was verified, so only its expiry is
        # checked again; a forged or changed token is another key, verified in full.
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._verified_lock = threading.Lock()

    def issue(self, pilot_id: str) -> str:
        """The credential of a registered pilot: its own routes, for `ttl_s`."""
        return self._sign(pilot_id, AUDIENCE, self._ttl_s)

    def issue_launch(self, pilot_id: str) -> str:
        """The launch credential for pilot `pilot_id`: it may register that pilot once, within
        `launch_ttl_s`, and do nothing else."""
        return self._sign(pilot_id, LAUNCH_AUDIENCE, self._launch_ttl_s)

    def _sign(self, pilot_id: str, audience: str, ttl_s: float) -> str:
        import jwt  # here, not at the top: `skypanda status` and friends never need it

        now = self._clock()
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "sub": pilot_id,
            "iat": int(now),
            "exp": int(now + ttl_s),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def authenticate(self, token: str) -> Principal:
        """The pilot a pilot credential acts for, or the launcher a launch credential stands for.

        Raises:
            Unauthorized: expired, forged, of another audience, or malformed (saying which kind
                of credential it claimed to be).
        """
        known = self.verified(token)
        return known if known is not None else self._verify(token)

    def verified(self, token: str) -> Principal | None:
        """Who `token` acts for, if this server verified that exact token before and it has
        not expired since (PyJWT's rule: expired from `exp` on); None otherwise."""
        hit = self._verified.get(token)
        if hit is None or time.time() >= hit[1]:
            return None
        return hit[0]

    def _verify(self, token: str) -> Principal:
        import jwt

        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],  # never "none", never a key the token names
                audience=[AUDIENCE, LAUNCH_AUDIENCE],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as e:
            kind = _kind(token)  # read again only to word the refusal (not on every request)
            launch = kind == "launch credential"
            again = "the pilot must be launched again" if launch else "register again"
            raise Unauthorized(f"{kind} expired: {again}") from e
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid {_kind(token)}: {e}") from e
        pilot, audience = str(claims["sub"]), claims["aud"]
        if audience == AUDIENCE:
            principal = Principal(f"pilot:{pilot}", frozenset({Role.PILOT}), pilot=pilot)
        elif audience == LAUNCH_AUDIENCE:
            principal = Principal(f"launch:{pilot}", frozenset({Role.LAUNCHER}), launch_for=pilot)
        else:  # a list naming both audiences verifies above; this server never signs one
            raise Unauthorized(
                f"invalid {_kind(token)}: audience {audience!r} is not one credential's"
            )
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_KEPT:  # the oldest goes (insertion order)
                del self._verified[next(iter(self._verified))]
            self._verified[token] = (principal, float(claims["exp"]))
        return principal


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class IssuerIdentity(Identity, Protocol):
    """An Identity for the JWTs of some issuers (OIDC, Google)."""

    @property
    def issuers(self) -> Sequence[str]:
        """The `iss` values of the tokens it verifies."""


class WithPilotCredentials:
    """The Identity port: pilots' credentials, an OIDC issuer's tokens, local tokens."""

    def __init__(
        self,
        people: Identity,
        pilots: PilotCredentials,
        *issuers: IssuerIdentity | None,
    ) -> None:
        self.people = people
        self.pilots = pilots
        self.issuers = [i for i in issuers if i is not None]

    def authenticate(self, token: str) -> Principal:
        if not looks_like_jwt(token):
            return self.people.authenticate(token)
        known = self.pilots.verified(token)  # a pilot's calls: no decoding after the first
        if known is not None:
            return known
        issuer = _issuer(token)
        if issuer == ISSUER:
            return self.pilots.authenticate(token)
        for other in self.issuers:
            if issuer in other.issuers:
                return other.authenticate(token)
        raise Unauthorized(f"a token of an issuer this server does not trust: {issuer!r}")

    def pilot_credential(self, pilot_id: str) -> str | None:
        return self.pilots.issue(pilot_id)


def _kind(token: str) -> str:
    """Which credential a JWT claims to be, unverified (for messages only)."""
    import jwt

    try:
        audience = jwt.decode(token, options={"verify_signature": False}).get("aud")
    except jwt.InvalidTokenError:
        audience = None
    return "launch credential" if audience == LAUNCH_AUDIENCE else "pilot credential"


def _issuer(token: str) -> object:
    """The `iss` a JWT claims, unverified (to pick who verifies it); None if unreadable."""
    import jwt

    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None
