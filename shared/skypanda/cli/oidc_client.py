"""The CLI's side of OIDC: log in with the OAuth 2.0 Device Authorization Grant (RFC 8628),
keep the session in `$SKYPANDA_HOME/oidc.json` (mode 0600), refresh it before it expires.

The device grant suits a command line: it prints a URL and a short code, the user approves
in any browser (even on another machine), and the CLI polls the issuer's token endpoint until
the approval arrives. No redirect URI, no local web server.

The protocol is hand-written on `urllib.request`, like `pilot/client.py`: it is one discovery
GET and form POSTs with JSON answers (~100 lines). The base install has no HTTP client beyond
the standard library (requests comes only with the `gcp` extra); oauthlib would only build the
request bodies (neither the HTTP nor the polling), and Authlib would be a new dependency of
every install for what these few functions do.

Which token the CLI sends: the server verifies a JWT's signature and its `aud` (the server's
audience). A provider's access token may be a JWT for that audience (then it is used), or
opaque, or for another audience; the ID token's audience is the client id, so when the client
id is the server's audience (the default) the ID token is what the server accepts.

Errors:

    LoginError(SkypandaError)   the issuer refused, the user denied, the code or session expired
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from skypanda.adapters.local.private import locked, write_private
from skypanda.domain.errors import SkypandaError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
BASE_SCOPES = ("openid", "profile", "offline_access")
SESSION_FILE = "oidc.json"
REFRESH_MARGIN_S = 60.0
"""A session is refreshed when its token has less than this left (a command takes a while)."""
SLOW_DOWN_S = 5.0
"""RFC 8628 3.5: on `slow_down` the polling interval grows by 5 s, for good."""
TIMEOUT_S = 30.0
REVOKE_TIMEOUT_S = 5.0
"""Revoking is best effort: logging out must not hang on an issuer that does not answer."""
EXPIRED = "login expired: run `skypanda login`"


class LoginError(SkypandaError):
    """Logging in or refreshing failed; the message says why and what to do."""

    http_status = 401


# -- files ------------------------------------------------------------------------------------
def _locked(path: Path) -> contextlib.AbstractContextManager[None]:
    """Hold `<path>.lock`: two commands refreshing at once must not both spend one refresh
    token (providers that rotate them refuse the second use)."""
    return locked(Path(f"{path}.lock"))


# -- the issuer -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Client:
    """This CLI as the issuer's client: where the issuer is, and who we are to it."""

    issuer: str
    client_id: str
    client_secret: str | None = None  # only for providers that want one on the device grant

    def form(self, **fields: str) -> dict[str, str]:
        extra = {"client_secret": self.client_secret} if self.client_secret else {}
        return {**fields, "client_id": self.client_id, **extra}


@dataclass(frozen=True)
class Endpoints:
    device_authorization: str
    token: str
    revocation: str | None = None


def discover(issuer: str) -> Endpoints:
    """The endpoints the issuer's discovery document names.

    Raises:
        LoginError: the document cannot be read, or the issuer offers no device grant.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            doc = json.loads(resp.read(1 << 20))
    except (OSError, ValueError) as e:
        raise LoginError(f"cannot read the OIDC discovery document {url}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("token_endpoint"), str):
        raise LoginError(f"the OIDC discovery document {url} names no token_endpoint")
    device = doc.get("device_authorization_endpoint")
    if not isinstance(device, str):
        raise LoginError(
            f"{issuer} offers no device login (no device_authorization_endpoint in {url})"
        )
    revocation = doc.get("revocation_endpoint")
    return Endpoints(
        device, doc["token_endpoint"], revocation if isinstance(revocation, str) else None
    )


def post_form(
    url: str, fields: dict[str, str], timeout: float = TIMEOUT_S
) -> tuple[int, dict[str, Any]]:
    """POST a form; the status and the JSON answer ({} when it is not a JSON object).

    Raises:
        LoginError: the endpoint could not be reached.
    """
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
    })  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, body = resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read(1 << 20)
    except OSError as e:
        raise LoginError(f"cannot reach {url}: {getattr(e, 'reason', None) or e}") from e
    try:
        answer = json.loads(body) if body else {}
    except ValueError:
        answer = {}
    return status, answer if isinstance(answer, dict) else {}


def _refusal(answer: dict[str, Any], status: int) -> str:
    error = str(answer.get("error") or f"HTTP {status}")
    description = answer.get("error_description")
    return f"{error}: {description}" if description else error


# -- the device grant -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceCode:
    """The issuer's answer to a device authorization request (RFC 8628 3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def request_device_code(client: Client, endpoints: Endpoints, scopes: list[str]) -> DeviceCode:
    """Ask the issuer for a device code and the URL where the user approves it.

    Raises:
        LoginError: the issuer refused (e.g. an unknown client id) or answered nonsense.
    """
    scope = " ".join(dict.fromkeys([*BASE_SCOPES, *scopes]))
    status, answer = post_form(endpoints.device_authorization, client.form(scope=scope))
    if status != 200:
        raise LoginError(f"{client.issuer} refused the device login: {_refusal(answer, status)}")
    uri = answer.get("verification_uri") or answer.get("verification_url")  # Google's spelling
    try:
        return DeviceCode(
            device_code=str(answer["device_code"]),
            user_code=str(answer["user_code"]),
            verification_uri=str(uri or answer["verification_uri"]),
            verification_uri_complete=answer.get("verification_uri_complete"),
            expires_in=float(answer.get("expires_in", 600)),
            interval=float(answer.get("interval", 5)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise LoginError(f"{client.issuer}'s device login answer lacks {e}") from e


def next_interval(error: str, interval: float, refusal: str) -> float:
    """The wait before the next poll after the token endpoint answered `error`.

    Raises:
        LoginError: the user denied, the code expired, or any other refusal: stop polling.
    """
    if error == "authorization_pending":
        return interval
    if error == "slow_down":
        return interval + SLOW_DOWN_S
    if error == "access_denied":
        raise LoginError("the login was denied at the issuer; nothing stored")
    if error == "expired_token":
        raise LoginError("the code expired before it was approved; run `skypanda login` again")
    raise LoginError(f"the issuer refused the login: {refusal}")


def poll_token(
    code: DeviceCode,
    ask: Callable[[], tuple[int, dict[str, Any]]],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll with `ask` (one token request) until the user approves; the token answer.

    Waits the issuer's interval before each poll (RFC 8628 3.4/3.5) and gives up when the
    code's `expires_in` has passed.

    Raises:
        LoginError: denied, expired, or refused (see `next_interval`).
    """
    deadline = clock() + code.expires_in
    interval = code.interval
    while True:
        sleep(interval)
        if clock() >= deadline:
            raise LoginError("the code expired before it was approved; run `skypanda login` again")
        status, answer = ask()
        if status == 200:
            return answer
        interval = next_interval(str(answer.get("error", "")), interval, _refusal(answer, status))


def token_request(
    client: Client, endpoints: Endpoints, code: DeviceCode
) -> tuple[int, dict[str, Any]]:
    """One poll of the token endpoint for `code`."""
    fields = client.form(grant_type=DEVICE_GRANT, device_code=code.device_code)
    return post_form(endpoints.token, fields)


# -- the session ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Session:
    """What `oidc.json` keeps: enough to send a token and to refresh it."""

    issuer: str
    client_id: str
    token_endpoint: str
    use: str  # which token is sent: "access_token" or "id_token"
    access_token: str | None
    id_token: str | None
    refresh_token: str | None
    expires_at: float | None  # of the token sent; None: unknown, never refreshed early
    client_secret: str | None = None
    revocation_endpoint: str | None = None

    @property
    def bearer(self) -> str:
        token = self.id_token if self.use == "id_token" else self.access_token
        if not token:
            raise LoginError(f"{SESSION_FILE} has no {self.use}: run `skypanda login`")
        return token

    def due(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at - REFRESH_MARGIN_S

    @property
    def client(self) -> Client:
        return Client(self.issuer, self.client_id, self.client_secret)


def jwt_claims(token: object) -> dict[str, Any] | None:
    """The claims of a JWT, unverified (only to choose a token: the server verifies); None
    for an opaque token."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def choose_token(answer: dict[str, Any], audience: str, use_id_token: bool | None) -> str:
    """Which token of a token answer to send: "access_token" or "id_token".

    True/False force one; None picks the access token when it is a JWT for `audience`, else
    the ID token when there is one (see the module docstring).

    Raises:
        LoginError: the answer lacks the token needed.
    """
    access, ident = answer.get("access_token"), answer.get("id_token")
    if use_id_token and not ident:
        raise LoginError("the issuer sent no id_token (was the `openid` scope granted?)")
    if use_id_token is False and not access:
        raise LoginError("the issuer sent no access_token")
    if use_id_token is not None:
        return "id_token" if use_id_token else "access_token"
    aud = (jwt_claims(access) or {}).get("aud")
    if access and audience in ([aud] if isinstance(aud, str) else aud or []):
        return "access_token"
    if ident:
        return "id_token"
    if access:
        return "access_token"
    raise LoginError("the issuer's answer has neither an access_token nor an id_token")


def session_from(answer: dict[str, Any], base: Session, use: str, now: float) -> Session:
    """`base` updated with a token answer (a refresh may omit the refresh or ID token)."""
    updated = replace(
        base,
        use=use,
        access_token=answer.get("access_token") or None,
        id_token=answer.get("id_token") or base.id_token,
        refresh_token=answer.get("refresh_token") or base.refresh_token,
    )
    exp = (jwt_claims(updated.bearer) or {}).get("exp")
    if isinstance(exp, int | float):
        return replace(updated, expires_at=float(exp))
    lifetime = answer.get("expires_in") if use == "access_token" else None
    expires_at = now + float(lifetime) if isinstance(lifetime, int | float) else None
    return replace(updated, expires_at=expires_at)


def new_session(
    client: Client, endpoints: Endpoints, answer: dict[str, Any], use: str, now: float
) -> Session:
    base = Session(
        issuer=client.issuer, client_id=client.client_id, token_endpoint=endpoints.token,
        use=use, access_token=None, id_token=None, refresh_token=None, expires_at=None,
        client_secret=client.client_secret, revocation_endpoint=endpoints.revocation,
    )  # fmt: skip
    return session_from(answer, base, use, now)


def save(home: Path, session: Session) -> Path:
    path = home / SESSION_FILE
    write_private(path, json.dumps(asdict(session), indent=2) + "\n")
    return path


def load(home: Path) -> Session | None:
    """The session in `<home>/oidc.json`, or None when there is none.

    Raises:
        LoginError: the file is unreadable or not a session.
    """
    path = home / SESSION_FILE
    try:
        return Session(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as e:
        raise LoginError(f"cannot read {path} ({e}): run `skypanda login`") from e


def refresh(session: Session, now: float) -> Session:
    """A new token for `session` from its refresh token.

    Raises:
        LoginError: no refresh token, or the issuer refused it ("login expired ...").
    """
    if not session.refresh_token:
        raise LoginError(f"{EXPIRED} (no refresh token was granted)")
    fields = session.client.form(grant_type="refresh_token", refresh_token=session.refresh_token)
    status, answer = post_form(session.token_endpoint, fields)
    if status != 200:
        raise LoginError(f"{EXPIRED} (the issuer refused the refresh: {_refusal(answer, status)})")
    if session.use == "id_token" and not answer.get("id_token"):
        raise LoginError(f"{EXPIRED} (the issuer's refresh answer has no id_token)")
    return session_from(answer, session, session.use, now)


def current_token(home: Path, now: Callable[[], float] = time.time) -> str | None:
    """The session's bearer token, refreshed first when it is about to expire; None when
    there is no session.

    Raises:
        LoginError: the refresh failed, or the file is unreadable.
    """
    session = load(home)
    if session is None or not session.due(now()):
        return None if session is None else session.bearer
    with _locked(home / SESSION_FILE):
        session = load(home)  # another command may have refreshed it while we waited
        if session is None:
            return None
        if session.due(now()):
            session = refresh(session, now())
            save(home, session)
    return session.bearer


def revoke(session: Session) -> bool:
    """Ask the issuer to revoke the refresh token (RFC 7009); True when it said yes.

    Best effort: logging out must work offline, and the local file goes either way.
    """
    if not session.revocation_endpoint or not session.refresh_token:
        return False
    fields = session.client.form(token=session.refresh_token, token_type_hint="refresh_token")
    try:
        status, _ = post_form(session.revocation_endpoint, fields, timeout=REVOKE_TIMEOUT_S)
    except LoginError:
        return False
    return status == 200
