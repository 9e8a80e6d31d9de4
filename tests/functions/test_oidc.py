"""OIDC bearer tokens against a test issuer the tests start (127.0.0.1; keys made here; the
discovery document and JWKS served over HTTP), through the real app: valid tokens accepted
and mapped to owners and roles; expired, wrong-audience, wrong-issuer, unsigned, tampered and
unknown-key tokens refused with 401 and a message; key rotation handled; an issuer that does
not answer is a 503, not a 401."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.oidc import OidcSettings, OidcTokens, settings_from_env
from skypanda.adapters.pilot_credentials import PilotCredentials, WithPilotCredentials
from skypanda.api.app import create_app
from skypanda.domain.errors import InvalidInput
from skypanda.handlers.services import Services
from tests.support import json_server

AUDIENCE = "skypanda-test"


class Issuer:
    """A minimal OIDC provider: keys by kid, a discovery document, a JWKS endpoint."""

    def __init__(self, url: str = "") -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.url = url

    def answer(self, path: str) -> Any:
        if path == "/.well-known/openid-configuration":
            return {"issuer": self.url, "jwks_uri": self.url + "/jwks"}
        if path == "/jwks":
            self.fetches += 1
            return {"keys": [self.jwk(kid) for kid in self.keys]}
        return None

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, kid: str) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True)
        return {**public, "kid": kid, "use": "sig", "alg": "RS256"}

    def token(self, kid: str = "k1", key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "sub": "u-1", "iat": now, "exp": now + 600,
                "preferred_username": "alice", "groups": ["/atlas"], **claims}  # fmt: skip
        signer = key or self.keys[kid]
        return jwt.encode(body, signer, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    found = Issuer()
    found.add_key("k1")
    with json_server(found.answer) as url:
        found.url = url
        yield found


@pytest.fixture
def client(svc: Services, issuer: Issuer, tmp_path: Path) -> Any:
    oidc = OidcTokens(OidcSettings(issuer=issuer.url, audience=AUDIENCE), refetch_after_s=0)
    identity = WithPilotCredentials(
        LocalTokens(tmp_path / "users.json"), PilotCredentials(b"k" * 32), oidc
    )
    return create_app(svc, identity).test_client()


def _get(client: Any, token: str) -> Any:
    return client.get("/v1/tasks", headers={"Authorization": f"Bearer {token}"})


def test_a_valid_token_names_the_owner_and_its_groups_the_roles(
    client: Any, issuer: Issuer
) -> None:
    alice = {"Authorization": f"Bearer {issuer.token()}"}
    body = {"name": "t", "command": ["true"], "n_jobs": 1}
    created = client.post("/v1/tasks", json=body, headers=alice)
    assert created.status_code == 201 and created.get_json()["owner"] == "alice"
    # bob, an ordinary user, may not kill it; carol of the admin group may
    bob = {"Authorization": f"Bearer {issuer.token(preferred_username='bob')}"}
    task = created.get_json()["id"]
    assert client.post(f"/v1/tasks/{task}/kill", json={}, headers=bob).status_code == 403
    carol = issuer.token(preferred_username="carol", groups=["/atlas", "/admin"])
    killed = client.post(f"/v1/tasks/{task}/kill", json={},
                         headers={"Authorization": f"Bearer {carol}"})  # fmt: skip
    assert killed.status_code == 200
    # and a user may not apply queues
    assert client.post("/v1/queues", json={}, headers=alice).status_code == 403


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda i: i.token(exp=int(time.time()) - 3600), "OIDC token expired"),
        (lambda i: i.token(aud="someone-else"), "invalid OIDC token: Audience"),
        (lambda i: i.token(iss="https://evil.example"), "issuer this server does not trust"),
        (
            lambda i: jwt.encode(
                {
                    "iss": i.url,
                    "aud": AUDIENCE,
                    "exp": int(time.time()) + 60,
                    "iat": int(time.time()),
                    "preferred_username": "mallory",
                },
                None,
                algorithm="none",
            ),
            "not signed by a key of",
        ),
        (lambda i: i.token()[:-4] + "AAAA", "invalid OIDC token: Signature verification"),
        (
            lambda i: i.token(kid="k1", key=rsa.generate_private_key(65537, 2048)),
            "invalid OIDC token: Signature verification",
        ),
        (
            lambda i: i.token(kid="nobody", key=rsa.generate_private_key(65537, 2048)),
            "not signed by a key of",
        ),
        (lambda i: i.token(preferred_username=None), "no 'preferred_username' claim"),
    ],
    ids=[
        "expired",
        "audience",
        "issuer",
        "alg-none",
        "tampered",
        "other-key",
        "unknown-kid",
        "no-owner",
    ],
)
def test_bad_tokens_are_refused_with_401_and_a_message(
    client: Any, issuer: Issuer, make: Any, says: str
) -> None:
    reply = _get(client, make(issuer))
    assert reply.status_code == 401, reply.get_json()
    assert says in reply.get_json()["message"]


def test_a_rotated_key_is_fetched_when_first_seen(client: Any, issuer: Issuer) -> None:
    assert _get(client, issuer.token()).status_code == 200
    # When the provider rotates to a new key (the old one withdrawn)
    issuer.add_key("k2")
    del issuer.keys["k1"]
    # Then a token signed with the new key is accepted (the key set is fetched again)
    fetched = issuer.fetches
    assert _get(client, issuer.token(kid="k2")).status_code == 200
    assert issuer.fetches == fetched + 1


def test_an_issuer_that_does_not_answer_is_a_503(svc: Services, tmp_path: Path) -> None:
    dead = OidcTokens(OidcSettings(issuer="http://127.0.0.1:9", audience=AUDIENCE,
                                   jwks_uri="http://127.0.0.1:9/jwks"), timeout_s=2)  # fmt: skip
    identity = WithPilotCredentials(LocalTokens(None), PilotCredentials(b"k" * 32), dead)
    client = create_app(svc, identity).test_client()
    token = jwt.encode(
        {"iss": "http://127.0.0.1:9", "aud": AUDIENCE, "exp": int(time.time()) + 60},
        rsa.generate_private_key(65537, 2048),
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    reply = _get(client, token)
    assert (
        reply.status_code == 503 and "cannot fetch the signing keys" in reply.get_json()["message"]
    )


def test_settings_come_from_the_environment() -> None:
    assert settings_from_env({}) is None
    with pytest.raises(InvalidInput, match="SKYPANDA_OIDC_AUDIENCE"):
        settings_from_env({"SKYPANDA_OIDC_ISSUER": "https://iam.example"})
    s = settings_from_env({
        "SKYPANDA_OIDC_ISSUER": "https://iam.example", "SKYPANDA_OIDC_AUDIENCE": "a",
        "SKYPANDA_OIDC_ADMIN_GROUPS": "atlas/production, admins",
    })  # fmt: skip
    assert s is not None and s.admin_groups == {"atlas/production", "admins"}
