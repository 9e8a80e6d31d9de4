"""The Identity port on Google-signed ID tokens: people through IAP or
`gcloud auth print-identity-token`, and the service accounts of other pipelines.

Verified by google-auth (`google.oauth2.id_token.verify_token`): the signature against
Google's published certificates (cached by google-auth's transport), `aud` among this
deployment's audiences (its functions' URLs, or IAP's client id), `exp`/`iat` with
`clock_skew_s`; then `iss` must be Google's, and the `email` verified. The caller's name is its
email; emails in `admins` are admins, in `launchers` launchers, everyone else a user.

Behind Cloud Functions' own IAM (functions not public), the `Authorization` header already
carries a Google ID token whose audience is the function's URL: list that URL in the
audiences, and the token IAM checked is the one skypanda reads, so the two do not fight over
the header.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from skypanda.domain.errors import BackendUnavailable, InvalidInput, Unauthorized
from skypanda.domain.identity import Principal, Role

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"


class GoogleIdTokens:
    def __init__(
        self,
        audiences: Sequence[str],
        *,
        admins: frozenset[str] = frozenset(),
        launchers: frozenset[str] = frozenset(),
        certs_url: str = GOOGLE_CERTS_URL,
        clock_skew_s: int = 60,
    ) -> None:
        if not audiences:
            raise InvalidInput("Google ID tokens need at least one audience")
        self.issuers = GOOGLE_ISSUERS
        self._audiences = list(audiences)
        self._admins = admins
        self._launchers = launchers
        self._certs_url = certs_url
        self._skew = clock_skew_s
        self._request: Any = None

    def authenticate(self, token: str) -> Principal:
        from google.auth import exceptions
        from google.oauth2 import id_token

        try:
            claims = id_token.verify_token(
                token,
                self._transport(),
                audience=self._audiences,
                certs_url=self._certs_url,
                clock_skew_in_seconds=self._skew,
            )
        except exceptions.TransportError as e:
            raise BackendUnavailable(f"cannot fetch Google's certificates: {e}") from e
        except (ValueError, exceptions.GoogleAuthError) as e:
            raise Unauthorized(f"invalid Google ID token: {e}") from e
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthorized(f"not a Google ID token (issuer {claims.get('iss')!r})")
        email = claims.get("email")
        if not isinstance(email, str) or not claims.get("email_verified"):
            raise Unauthorized("Google ID token without a verified email to name its owner")
        roles = {Role.USER}
        if email in self._admins:
            roles.add(Role.ADMIN)
        if email in self._launchers:
            roles.add(Role.LAUNCHER)
        return Principal(email, frozenset(roles))

    def pilot_credential(self, pilot_id: str) -> str | None:
        return None

    def _transport(self) -> Any:
        if self._request is None:
            from google.auth.transport import requests as google_requests

            self._request = google_requests.Request()
        return self._request


def google_ids_from_env() -> GoogleIdTokens | None:
    """Google ID tokens, when SKYPANDA_GOOGLE_AUDIENCES (comma-separated) says for which
    audiences; SKYPANDA_GOOGLE_ADMINS and _LAUNCHERS list emails; _CERTS_URL overrides where
    Google's certificates are read (tests)."""
    audiences = _list("SKYPANDA_GOOGLE_AUDIENCES")
    if not audiences:
        return None
    return GoogleIdTokens(
        sorted(audiences),
        admins=_list("SKYPANDA_GOOGLE_ADMINS"),
        launchers=_list("SKYPANDA_GOOGLE_LAUNCHERS"),
        certs_url=os.environ.get("SKYPANDA_GOOGLE_CERTS_URL") or GOOGLE_CERTS_URL,
    )


def _list(name: str) -> frozenset[str]:
    return frozenset(v.strip() for v in os.environ.get(name, "").split(",") if v.strip())
