"""Monitor sessions (api.monitor.session): what a cookie, a login form's nonce and a login link
carry, for how long, and that nothing forged, expired or reused opens."""

from __future__ import annotations

import pytest

from skypanda.api.monitor.auth import safe_next
from skypanda.api.monitor.session import (
    LINK_S,
    LOGIN_FORM_S,
    SESSION_S,
    Sessions,
    derive_key,
    key_from_env,
)
from skypanda.domain.errors import InvalidInput, Unauthorized

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def test_a_session_opens_with_its_token_and_a_csrf_token_until_it_expires() -> None:
    # Given a session started for alice's token
    clock = Clock()
    sessions = Sessions(KEY, now=clock)
    cookie = sessions.start("alice-token", "alice")
    # Then the cookie hides the token (encrypted, not only signed)
    assert "alice-token" not in cookie
    # And it opens to the token, the name and a CSRF token of its own
    session = sessions.read(cookie)
    assert session is not None
    assert (session.token, session.name) == ("alice-token", "alice")
    assert len(session.csrf) >= 24
    assert sessions.read(sessions.start("alice-token", "alice")).csrf != session.csrf  # type: ignore[union-attr]
    # When its lifetime passed, it opens no more
    clock.t += SESSION_S - 1
    assert sessions.read(cookie) is not None
    clock.t += 2
    assert sessions.read(cookie) is None


def test_a_forged_edited_or_foreign_cookie_is_as_if_absent() -> None:
    sessions = Sessions(KEY)
    cookie = sessions.start("tok", "alice")
    assert sessions.read(None) is None
    assert sessions.read("") is None
    assert sessions.read("not a cookie") is None
    assert sessions.read(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert Sessions(b"o" * 32).read(cookie) is None  # another server's key
    # A login link's code or a login nonce is not a session, though sealed alike
    assert sessions.read(sessions.link_code("tok")) is None
    assert sessions.read(sessions.login_nonce()[1]) is None


def test_servers_sharing_a_key_share_sessions() -> None:
    # Given two replicas with the same key (Cloud Function instances), a session of one opens
    # on the other: sessions are stateless
    cookie = Sessions(KEY).start("tok", "alice")
    assert Sessions(KEY).read(cookie) is not None


def test_a_login_form_posts_only_with_the_nonce_of_its_own_cookie() -> None:
    clock = Clock()
    sessions = Sessions(KEY, now=clock)
    nonce, cookie = sessions.login_nonce()
    sessions.check_login_nonce(nonce, cookie)  # the form this monitor showed
    other_nonce, other_cookie = sessions.login_nonce()
    for given, vouching in [
        (nonce, other_cookie),
        (other_nonce, cookie),
        ("", cookie),
        (nonce, None),
    ]:
        with pytest.raises(Unauthorized, match="login form expired or came from elsewhere"):
            sessions.check_login_nonce(given, vouching)
    clock.t += LOGIN_FORM_S + 1
    with pytest.raises(Unauthorized):
        sessions.check_login_nonce(nonce, cookie)


def test_a_login_link_is_redeemed_once_and_only_while_fresh() -> None:
    clock = Clock()
    sessions = Sessions(KEY, now=clock)
    code = sessions.link_code("alice-token")
    assert "alice-token" not in code
    assert sessions.redeem(code) == "alice-token"
    with pytest.raises(Unauthorized, match="used already"):
        sessions.redeem(code)
    late = sessions.link_code("alice-token")
    clock.t += LINK_S + 1
    with pytest.raises(Unauthorized, match="not valid or has expired"):
        sessions.redeem(late)
    with pytest.raises(Unauthorized, match="not valid"):
        sessions.redeem(sessions.start("alice-token", "alice"))  # a session is no link


def test_keys_are_derived_apart_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert derive_key(KEY) != derive_key(KEY, "other purpose")
    assert derive_key(KEY) != KEY and len(derive_key(KEY)) == 32
    for name in ("SKYPANDA_SESSION_KEY", "K_SERVICE", "SKYPANDA_SIGNING_KEY", "SKYPANDA_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert key_from_env() is None
    # A Cloud Function instance derives it from the deployment's shared secret
    monkeypatch.setenv("SKYPANDA_TOKEN", "deployment-token")
    assert key_from_env() is None  # not on Google Cloud: no guess
    monkeypatch.setenv("K_SERVICE", "skypanda-submit")
    assert key_from_env() == derive_key(b"deployment-token")
    monkeypatch.setenv("SKYPANDA_SIGNING_KEY", "signing-key")
    assert key_from_env() == derive_key(b"signing-key")
    monkeypatch.setenv("SKYPANDA_SESSION_KEY", "short")
    with pytest.raises(InvalidInput, match="at least 32 characters"):
        key_from_env()
    monkeypatch.setenv("SKYPANDA_SESSION_KEY", "x" * 40)
    cookie = Sessions().start("tok", "alice")
    assert Sessions().read(cookie) is not None  # both took the key from the environment


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/ui/tasks"),
        ("", "/ui/tasks"),
        ("/ui/jobs/j1?attempt=2", "/ui/jobs/j1?attempt=2"),
        ("https://evil.example/ui/tasks", "/ui/tasks"),
        ("//evil.example/ui/tasks", "/ui/tasks"),
        ("/v1/tasks", "/ui/tasks"),
        ("/ui/login", "/ui/tasks"),
        ("/ui/\\evil", "/ui/tasks"),
    ],
)
def test_after_login_the_user_goes_only_to_a_page_of_the_monitor(
    target: str | None, expected: str
) -> None:
    assert safe_next(target) == expected
