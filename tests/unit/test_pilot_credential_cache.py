"""Pilot credentials verified once (`PilotCredentials.verified`): a pilot's later calls with the
same credential skip the JWT decoding, never its expiry, and never for another string."""

from __future__ import annotations

import time

import pytest

from skypanda.adapters import pilot_credentials
from skypanda.adapters.pilot_credentials import PilotCredentials, WithPilotCredentials
from skypanda.domain.errors import Unauthorized

KEY = b"k" * 32


class _Nobody:
    def authenticate(self, token: str) -> object:
        raise Unauthorized("not a person's token")

    def pilot_credential(self, pilot_id: str) -> str | None:
        return None


def test_a_verified_credential_is_known_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a pilot credential that was verified once
    creds = PilotCredentials(KEY, ttl_s=600)
    token = creds.issue("p1")
    assert creds.verified(token) is None  # not before its first verification
    first = creds.authenticate(token)
    assert first.pilot == "p1"
    # Then it is known as that pilot
    assert creds.verified(token) == first
    # And no longer once its expiry has come (the clock moved past `exp`)
    later = time.time() + 601
    monkeypatch.setattr(pilot_credentials.time, "time", lambda: later)
    assert creds.verified(token) is None


def test_a_changed_credential_is_verified_in_full_and_refused() -> None:
    # Given a pilot's credential, verified and remembered
    creds = PilotCredentials(KEY)
    identity = WithPilotCredentials(_Nobody(), creds)  # type: ignore[arg-type]
    token = creds.issue("p1")
    assert identity.authenticate(token).pilot == "p1"
    # When its signature is changed by one character
    head, body, signature = token.split(".")
    forged = ".".join([head, body, ("A" if signature[0] != "A" else "B") + signature[1:]])
    # Then it is refused (not taken for the one remembered)
    with pytest.raises(Unauthorized):
        identity.authenticate(forged)
    assert creds.verified(forged) is None


def test_the_remembered_credentials_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given room for two
    monkeypatch.setattr(pilot_credentials, "VERIFIED_KEPT", 2)
    creds = PilotCredentials(KEY)
    tokens = [creds.issue(f"p{n}") for n in range(3)]
    # When three are verified
    for token in tokens:
        creds.authenticate(token)
    # Then the oldest is forgotten (and would be verified again), the others are known
    assert creds.verified(tokens[0]) is None
    assert [creds.verified(t).pilot for t in tokens[1:]] == ["p1", "p2"]  # type: ignore[union-attr]
