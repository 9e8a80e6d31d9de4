"""Credentials scoped to one pilot, short-lived, renewed by its heartbeats.

A pilot starts with a launch credential (the launcher's: it may only register). Registering
answers with a credential for that pilot alone: an HS256 JSON Web Token (PyJWT) the server
signs, naming the pilot (`sub`) and expiring after `ttl_s`; every heartbeat's reply carries a
fresh one. With it the pilot may call only its own pilot routes and log or upload only for
jobs it holds (api.access and the job routes check). A copy that leaks is worth little: it
acts for one pilot, and only until it expires.

`WithPilotCredentials` puts these in front of the identities that know the people: a JWT this
server issued is a pilot's; a JWT of the configured OIDC issuer goes to it (`adapters.oidc`);
any other token to the local tokens. A JWT of an issuer not trusted here is refused, naming it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from skypanda.domain.errors import Unauthorized
from skypanda.domain.identity import Principal, Role
from skypanda.ports import Identity

ISSUER = "skypanda"
AUDIENCE = "skypanda-pilot"
DEFAULT_TTL_S = 600.0


class PilotCredentials:
    def __init__(
        self,
        key: bytes,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(key) < 32:
            raise ValueError("a pilot credential key needs at least 32 bytes")
        self._key = key
        self._ttl_s = ttl_s
        self._clock = clock

    def issue(self, pilot_id: str) -> str:
        import jwt  # here, not at the top: `skypanda status` and friends never need it

        now = self._clock()
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": pilot_id,
            "iat": int(now),
            "exp": int(now + self._ttl_s),
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def authenticate(self, token: str) -> Principal:
        import jwt

        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],  # never "none", never a key the token names
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise Unauthorized("pilot credential expired: register again") from e
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid pilot credential: {e}") from e
        pilot = str(claims["sub"])
        return Principal(f"pilot:{pilot}", frozenset({Role.PILOT}), pilot=pilot)


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
        issuer = _issuer(token)
        if issuer == ISSUER:
            return self.pilots.authenticate(token)
        for other in self.issuers:
            if issuer in other.issuers:
                return other.authenticate(token)
        raise Unauthorized(f"a token of an issuer this server does not trust: {issuer!r}")

    def pilot_credential(self, pilot_id: str) -> str | None:
        return self.pilots.issue(pilot_id)


def _issuer(token: str) -> object:
    """The `iss` a JWT claims, unverified (to pick who verifies it); None if unreadable."""
    import jwt

    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None
