"""The CLI's OIDC client without an issuer: the polling rules of RFC 8628 on a fake clock,
which token is sent, when a session is refreshed, and files that are never readable by others."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from skypanda.cli.oidc_client import (
    DeviceCode,
    LoginError,
    Session,
    choose_token,
    jwt_claims,
    poll_token,
    session_from,
    write_private,
)

CODE = DeviceCode("dc", "ABCD", "https://iam.example/device", None, expires_in=60, interval=2)


def _jwt(**claims: Any) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


class Clock:
    """Moves only when the poller sleeps."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.t += seconds

    def now(self) -> float:
        return self.t


def _scripted(*answers: tuple[int, dict[str, Any]]) -> Any:
    queue = list(answers)
    return lambda: queue.pop(0)


def test_polling_waits_the_interval_and_five_more_seconds_after_slow_down() -> None:
    clock = Clock()
    ask = _scripted(
        (400, {"error": "authorization_pending"}),
        (400, {"error": "slow_down"}),
        (400, {"error": "authorization_pending"}),
        (200, {"access_token": "a"}),
    )
    assert poll_token(CODE, ask, sleep=clock.sleep, clock=clock.now) == {"access_token": "a"}
    assert clock.waits == [2, 2, 7, 7]


@pytest.mark.parametrize(
    ("error", "says"),
    [
        ("access_denied", "denied"),
        ("expired_token", "expired before it was approved"),
        ("invalid_grant", "refused the login: invalid_grant"),
    ],
)
def test_polling_stops_at_a_refusal(error: str, says: str) -> None:
    clock = Clock()
    ask = _scripted((400, {"error": "authorization_pending"}), (400, {"error": error}))
    with pytest.raises(LoginError, match=says):
        poll_token(CODE, ask, sleep=clock.sleep, clock=clock.now)


def test_polling_gives_up_when_the_code_expires_without_asking_again() -> None:
    # Given an issuer that never answers anything but "pending"
    clock = Clock()
    asked = 0

    def ask() -> tuple[int, dict[str, Any]]:
        nonlocal asked
        asked += 1
        return 400, {"error": "authorization_pending"}

    # Then polling stops once the code's 60 s have passed: 29 polls, 2 s apart
    with pytest.raises(LoginError, match="expired"):
        poll_token(CODE, ask, sleep=clock.sleep, clock=clock.now)
    assert asked == 29 and clock.t == 60


def test_the_access_token_is_sent_when_it_is_a_jwt_for_the_audience() -> None:
    ident = _jwt(aud="skypanda")
    assert choose_token({"access_token": _jwt(aud=["x", "skypanda"]), "id_token": ident},
                        "skypanda", None) == "access_token"  # fmt: skip
    # an opaque access token, or one for another audience: the ID token
    assert choose_token({"access_token": "opaque", "id_token": ident}, "skypanda", None) == (
        "id_token"
    )
    assert choose_token({"access_token": _jwt(aud="x"), "id_token": ident}, "skypanda", None) == (
        "id_token"
    )
    # without an ID token: the access token, whatever it is
    assert choose_token({"access_token": "opaque"}, "skypanda", None) == "access_token"
    # forced either way
    assert choose_token({"access_token": "opaque", "id_token": ident}, "s", False) == (
        "access_token"
    )
    with pytest.raises(LoginError, match="no id_token"):
        choose_token({"access_token": "opaque"}, "skypanda", True)
    with pytest.raises(LoginError, match="neither"):
        choose_token({}, "skypanda", None)


def test_opaque_tokens_have_no_claims() -> None:
    assert jwt_claims("opaque") is None
    assert jwt_claims("a.b.c") is None
    assert jwt_claims(None) is None
    assert jwt_claims(_jwt(exp=5)) == {"exp": 5}


BASE = Session(
    issuer="https://iam.example", client_id="c", token_endpoint="https://iam.example/token",
    use="id_token", access_token=None, id_token=None, refresh_token="r1", expires_at=None,
)  # fmt: skip


def test_a_session_expires_with_its_token_and_is_due_a_minute_before() -> None:
    session = session_from({"access_token": "opaque", "id_token": _jwt(exp=1000)}, BASE,
                           "id_token", now=0)  # fmt: skip
    assert session.expires_at == 1000 and session.refresh_token == "r1"
    assert not session.due(939) and session.due(940)
    # an opaque access token: its expires_in
    opaque = session_from({"access_token": "o", "expires_in": 300}, BASE, "access_token", 100)
    assert opaque.expires_at == 400 and opaque.bearer == "o"
    # no expiry known: never refreshed early
    assert not session_from({"access_token": "o"}, BASE, "access_token", 0).due(1e12)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_files_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    target = tmp_path / "home" / "token"
    old = os.umask(0)
    try:
        write_private(target, "one\n")
        assert _mode(target) == 0o600 and target.read_text() == "one\n"
        # a file that was readable by others is replaced by a private one
        target.chmod(0o644)
        write_private(target, "two\n")
        assert _mode(target) == 0o600 and target.read_text() == "two\n"
    finally:
        os.umask(old)
    assert [p.name for p in target.parent.iterdir()] == ["token"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "oidc.json"
    write_private(target, "old")
    with pytest.raises(TypeError):
        write_private(target, 5)  # type: ignore[arg-type]
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["oidc.json"]
