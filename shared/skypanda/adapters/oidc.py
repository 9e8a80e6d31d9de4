"""The Identity port on OIDC bearer tokens: JWTs an identity provider signs (Indigo IAM, as
PanDA uses, or any OIDC provider), checked against the issuer's published keys.

Verification is PyJWT's: the signature against the issuer's JWKS (asymmetric algorithms only:
never `none`, never a shared secret), `iss`, `aud`, `exp` (with `leeway_s` of clock skew),
`iat`. Keys are fetched from the `jwks_uri` of the issuer's discovery document and cached
(`PyJWKClient`); a token signed with a key not yet seen makes the client fetch the key set
again, so the provider's key rotation needs nothing from us.

The caller's name (a task's owner) is the `owner_claim` (e.g. `preferred_username`, or `sub`);
its roles come from the `groups_claim`: a member of one of `admin_groups` is an admin, of
`pilot_groups` a pilot, of `launcher_groups` a launcher; everyone else a user.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from skypanda.domain.errors import BackendUnavailable, InvalidInput, Unauthorized
from skypanda.domain.identity import Principal, Role

ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    owner_claim: str = "preferred_username"
    groups_claim: str = "groups"
    admin_groups: frozenset[str] = field(default_factory=lambda: frozenset({"admin"}))
    pilot_groups: frozenset[str] = frozenset()
    launcher_groups: frozenset[str] = frozenset()
    leeway_s: float = 60.0
    jwks_uri: str | None = None  # default: from the issuer's discovery document


class OidcTokens:
    """Verify OIDC bearer tokens of one issuer (see the module docstring)."""

    def __init__(
        self, settings: OidcSettings, *, timeout_s: float = 10.0, refetch_after_s: float = 5.0
    ) -> None:
        self.settings = settings
        self.issuers = (settings.issuer,)
        self._timeout_s = timeout_s
        self._refetch_after_s = refetch_after_s  # least time between two fetches for a new key
        self._lock = threading.Lock()
        self._keys: Any = None  # a jwt.PyJWKClient, made at the first token

    def authenticate(self, token: str) -> Principal:
        import jwt

        s = self.settings
        try:
            key = self._client().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise Unauthorized("OIDC token expired: get a new one from your provider") from e
        except jwt.PyJWKClientConnectionError as e:
            raise BackendUnavailable(f"cannot fetch the signing keys of {s.issuer}: {e}") from e
        except jwt.PyJWKClientError as e:
            raise Unauthorized(f"OIDC token not signed by a key of {s.issuer}: {e}") from e
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid OIDC token: {e}") from e
        name = claims.get(s.owner_claim)
        if not isinstance(name, str) or not name:
            raise Unauthorized(f"OIDC token has no {s.owner_claim!r} claim to name its owner")
        return Principal(name, self._roles(claims.get(s.groups_claim)))

    def pilot_credential(self, pilot_id: str) -> str | None:
        return None

    def _roles(self, groups: object) -> frozenset[Role]:
        s = self.settings
        have = {g.strip("/") for g in _strings(groups)}
        roles = {Role.USER}
        if have & s.admin_groups:
            roles.add(Role.ADMIN)
        if have & s.pilot_groups:
            roles.add(Role.PILOT)
        if have & s.launcher_groups:
            roles.add(Role.LAUNCHER)
        return frozenset(roles)

    def _client(self) -> Any:
        import jwt

        with self._lock:
            if self._keys is None:
                uri = self.settings.jwks_uri or self._discover()
                self._keys = jwt.PyJWKClient(
                    uri, cache_keys=False, lifespan=300, timeout=self._timeout_s,
                    cooldown_duration=self._refetch_after_s,
                )  # fmt: skip
            return self._keys

    def _discover(self) -> str:
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=self._timeout_s) as resp:
                doc = json.loads(resp.read(1 << 20))
        except (OSError, ValueError) as e:
            raise Unauthorized(f"cannot read the OIDC discovery document {url}: {e}") from e
        uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
        if not isinstance(uri, str):
            raise Unauthorized(f"the OIDC discovery document {url} names no jwks_uri")
        return uri


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def settings_from_env(env: dict[str, str]) -> OidcSettings | None:
    """OIDC settings from SKYPANDA_OIDC_* variables; None without SKYPANDA_OIDC_ISSUER.

    Raises:
        InvalidInput: an issuer without an audience.
    """
    issuer = env.get("SKYPANDA_OIDC_ISSUER")
    if not issuer:
        return None
    audience = env.get("SKYPANDA_OIDC_AUDIENCE")
    if not audience:
        raise InvalidInput("SKYPANDA_OIDC_ISSUER needs SKYPANDA_OIDC_AUDIENCE (this server's id)")

    def groups(name: str, default: str = "") -> frozenset[str]:
        return frozenset(g.strip() for g in env.get(name, default).split(",") if g.strip())

    return OidcSettings(
        issuer=issuer,
        audience=audience,
        owner_claim=env.get("SKYPANDA_OIDC_OWNER_CLAIM", "preferred_username"),
        groups_claim=env.get("SKYPANDA_OIDC_GROUPS_CLAIM", "groups"),
        admin_groups=groups("SKYPANDA_OIDC_ADMIN_GROUPS", "admin"),
        pilot_groups=groups("SKYPANDA_OIDC_PILOT_GROUPS"),
        launcher_groups=groups("SKYPANDA_OIDC_LAUNCHER_GROUPS"),
        jwks_uri=env.get("SKYPANDA_OIDC_JWKS_URI") or None,
    )


def oidc_from_env() -> OidcTokens | None:
    """An OIDC issuer's tokens, when SKYPANDA_OIDC_ISSUER (and _AUDIENCE ...) say which.

    Raises:
        InvalidInput: see `settings_from_env`.
    """
    settings = settings_from_env(dict(os.environ))
    return None if settings is None else OidcTokens(settings)
