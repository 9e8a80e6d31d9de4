"""Credentials scoped to one pilot, short-lived, renewed by its heartbeats.

A pilot starts with a launch credential (the launcher's: it may only register). Registering
answers with a credential for that pilot alone: an HS256 JSON Web Token (PyJWT) the server
signs, naming the pilot (`sub`) and expiring after `ttl_s`; every heartbeat's reply carries a
fresh one. With it the pilot may call only its own pilot routes and log or upload only for
jobs it holds (api.access and the job routes check). A copy that leaks is worth little: it
acts for one pilot, and only until it expires.

`WithPilotCredentials` puts these in front of the identity that knows the people (local tokens,
or later OIDC): a token shaped like a JWT signed by this server is a pilot's; anything else
goes to the people's identity.
"""

from __future__ import annotations

import time
from collections.abc import Callable

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


class WithPilotCredentials:
    """The Identity port: pilots' credentials, then the people's identity."""

    def __init__(self, people: Identity, pilots: PilotCredentials) -> None:
        self.people = people
        self.pilots = pilots

    def authenticate(self, token: str) -> Principal:
        if looks_like_jwt(token):
            return self.pilots.authenticate(token)
        return self.people.authenticate(token)

    def pilot_credential(self, pilot_id: str) -> str | None:
        return self.pilots.issue(pilot_id)
