"""Google-signed ID tokens verified with google-auth against certificates the test serves
(127.0.0.1, an RSA key and its self-signed certificate made here, in the shape of
https://www.googleapis.com/oauth2/v1/certs), through the real app."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from skypanda.adapters.gcp.google_ids import GoogleIdTokens
from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.pilot_credentials import PilotCredentials, WithPilotCredentials
from skypanda.api.app import create_app
from skypanda.domain.models import Queue
from tests.support import FakeClock, json_server, sqlite_services

AUDIENCE = "https://submit-abc123.a.run.app"


def _cert(key: rsa.RSAPrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-google-certs")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class Certs:
    """Google's certificate endpoint, in its shape: {kid: PEM certificate}."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pems = {"kid-1": _cert(self.key)}
        self.url = ""

    def answer(self, path: str) -> Any:
        return self.pems if path == "/oauth2/v1/certs" else None

    def token(self, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "iat": now,
                "exp": now + 600, "sub": "1234", "email": "alice@example.org",
                "email_verified": True, **claims}  # fmt: skip
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": "kid-1"})


@pytest.fixture
def certs() -> Iterator[Certs]:
    served = Certs()
    with json_server(served.answer) as url:
        served.url = url + "/oauth2/v1/certs"
        yield served


@pytest.fixture
def client(certs: Certs, tmp_path: Path) -> Iterator[Any]:
    google = GoogleIdTokens([AUDIENCE], admins=frozenset({"ops@example.org"}), certs_url=certs.url)
    identity = WithPilotCredentials(LocalTokens(None), PilotCredentials(b"k" * 32), google)
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as svc:
        yield create_app(svc, identity).test_client()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_google_id_token_names_its_owner_by_email(client: Any, certs: Certs) -> None:
    body = {"name": "t", "command": ["true"], "n_jobs": 1}
    created = client.post("/v1/tasks", json=body, headers=_auth(certs.token()))
    assert created.status_code == 201 and created.get_json()["owner"] == "alice@example.org"
    task = created.get_json()["id"]
    other = certs.token(email="bob@example.org")
    assert client.post(f"/v1/tasks/{task}/kill", json={}, headers=_auth(other)).status_code == 403
    ops = certs.token(email="ops@example.org")
    assert client.post(f"/v1/tasks/{task}/kill", json={}, headers=_auth(ops)).status_code == 200


@pytest.mark.parametrize(
    ("claims", "says"),
    [
        ({"aud": "https://other.a.run.app"}, "invalid Google ID token"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, "invalid Google ID"),
        ({"email_verified": False}, "without a verified email"),
        ({"iss": "accounts.google.com.evil"}, "issuer this server does not trust"),
    ],
    ids=["audience", "expired", "unverified-email", "issuer"],
)
def test_bad_google_id_tokens_are_refused(
    client: Any, certs: Certs, claims: dict[str, Any], says: str
) -> None:
    reply = client.get("/v1/tasks", headers=_auth(certs.token(**claims)))
    assert reply.status_code == 401 and says in reply.get_json()["message"]


def test_a_token_signed_by_another_key_is_refused(client: Any, certs: Certs) -> None:
    forged = certs.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    reply = client.get("/v1/tasks", headers=_auth(forged))
    assert reply.status_code == 401 and "invalid Google ID token" in reply.get_json()["message"]
