"""`skypanda login | logout | whoami` through click, against an embedded server that trusts a
test OIDC issuer (127.0.0.1; keys made here) implementing discovery, the device authorization
grant, token polling whose answers the test scripts (pending, slow_down, denied, expired; never
a clock), refresh with rotating refresh tokens, and revocation."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from skypanda.cli import login as login_module
from skypanda.cli.main import cli
from skypanda.cli.oidc_client import DEVICE_GRANT, current_token
from skypanda.domain.identity import Role
from skypanda.runtime.local import LocalOptions, LocalSystem
from tests.functions.test_oidc import AUDIENCE, Issuer
from tests.support import json_server

PENDING = (400, {"error": "authorization_pending"})
SLOW_DOWN = (400, {"error": "slow_down"})


class DeviceIssuer(Issuer):
    """The test issuer of test_oidc, with the endpoints a device login needs."""

    def __init__(self) -> None:
        super().__init__()
        self.add_key("k1")
        self.reset()

    def reset(self) -> None:
        """Forget what the last test scripted and saw (the keys stay: the server caches them)."""
        self.polls: list[tuple[int, dict[str, Any]]] = []  # answered before the tokens
        self.refreshes: list[tuple[int, dict[str, Any]]] = []  # answered before fresh tokens
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.revoked: list[str] = []
        self.live_refresh: set[str] = set()
        self.lifetime = 600
        self.jwt_access = False  # an opaque access token, as many providers issue
        self.issued = 0

    def answer(self, path: str) -> Any:
        if path == "/.well-known/openid-configuration":
            return {
                "issuer": self.url,
                "jwks_uri": self.url + "/jwks",
                "device_authorization_endpoint": self.url + "/device",
                "token_endpoint": self.url + "/token",
                "revocation_endpoint": self.url + "/revoke",
            }
        return super().answer(path)

    def post(self, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.forms.append((path, form))
        if path == "/device":
            return 200, {
                "device_code": "dc-1", "user_code": "WDJB-MJHT",
                "verification_uri": self.url + "/activate",
                "verification_uri_complete": self.url + "/activate?user_code=WDJB-MJHT",
                "expires_in": 600, "interval": 0,
            }  # fmt: skip
        if path == "/revoke":
            self.revoked.append(form["token"])
            self.live_refresh.discard(form["token"])
            return 200, {}
        if form.get("grant_type") == DEVICE_GRANT and form.get("device_code") == "dc-1":
            return self.polls.pop(0) if self.polls else self.tokens()
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.live_refresh:
                return 400, {"error": "invalid_grant", "error_description": "unknown token"}
            if self.refreshes:
                return self.refreshes.pop(0)
            self.live_refresh.discard(form["refresh_token"])  # rotated: usable once
            return self.tokens()
        return 400, {"error": "invalid_request"}

    def tokens(self) -> tuple[int, dict[str, Any]]:
        self.issued += 1
        n = self.issued
        exp = int(time.time()) + self.lifetime
        access = self.token(exp=exp) if self.jwt_access else f"opaque-{n}"
        self.live_refresh.add(f"rt-{n}")
        return 200, {
            "access_token": access, "token_type": "Bearer", "expires_in": self.lifetime,
            "id_token": self.token(exp=exp, aud=AUDIENCE), "refresh_token": f"rt-{n}",
        }  # fmt: skip


@pytest.fixture(scope="module")
def shared_issuer() -> Iterator[DeviceIssuer]:
    found = DeviceIssuer()
    with json_server(found.answer, found.post) as url:
        found.url = url
        yield found


@pytest.fixture(scope="module")
def oidc_env(shared_issuer: DeviceIssuer) -> Iterator[None]:
    """The issuer configured for the server and, by default, for the CLI."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKYPANDA_OIDC_ISSUER", shared_issuer.url)
        patch.setenv("SKYPANDA_OIDC_AUDIENCE", AUDIENCE)
        yield


@pytest.fixture(scope="module")
def system(oidc_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """One embedded server trusting the issuer, for the module (it takes a second to stop)."""
    home = tmp_path_factory.mktemp("server")
    with LocalSystem(LocalOptions(home=home, launch_pilots=False)) as started:
        yield started


@pytest.fixture
def issuer(shared_issuer: DeviceIssuer) -> DeviceIssuer:
    shared_issuer.reset()
    return shared_issuer


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between polls, recorded instead of slept."""
    seen: list[float] = []
    monkeypatch.setattr(login_module, "SLEEP", seen.append)
    return seen


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "cli"


def run(system: LocalSystem, home: Path, *args: str, stdin: str | None = None,
        **env: str | None) -> Result:  # fmt: skip
    environment = {"SKYPANDA_HOME": str(home), "SKYPANDA_SERVER": system.url,
                   "SKYPANDA_TOKEN": None, **env}  # fmt: skip
    return CliRunner().invoke(cli, list(args), input=stdin, env=environment)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _session(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / "oidc.json").read_text()))


def test_a_device_login_is_kept_private_and_the_server_knows_the_user(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float], tmp_path: Path
) -> None:
    # Given an issuer that answers "pending", then "slow down", then the tokens
    issuer.polls = [PENDING, SLOW_DOWN]
    # When the user logs in (the issuer is configured: OIDC is the default)
    done = run(system, home, "login")
    # Then they were shown where to approve, and the polls honoured the interval and slow_down
    assert done.exit_code == 0, done.output
    assert f"{issuer.url}/activate?user_code=WDJB-MJHT" in done.output
    assert "logged in as alice (user)" in done.output
    assert waits == [0, 0, 5]
    device = [f for p, f in issuer.forms if p == "/device"]
    assert device == [{"client_id": AUDIENCE, "scope": "openid profile offline_access"}]
    # And the session is kept, readable by its owner only, sending the ID token (the access
    # token is opaque), with nothing else left behind
    session = _session(home)
    assert _mode(home / "oidc.json") == 0o600
    assert sorted(p.name for p in home.iterdir()) == ["oidc.json"]
    assert session["issuer"] == issuer.url and session["client_id"] == AUDIENCE
    assert session["use"] == "id_token" and session["refresh_token"] == "rt-1"
    assert session["expires_at"] > time.time() + 500
    # And every command now acts as alice
    me = run(system, home, "whoami")
    assert me.exit_code == 0 and me.output.startswith("alice (user) at "), me.output
    (tmp_path / "t.yaml").write_text("name: t\ncommand: ['true']\nn_jobs: 1\nqueue: local\n")
    task_id = run(system, home, "submit", str(tmp_path / "t.yaml")).output.strip()
    shown = run(system, home, "status", task_id, "--json")
    assert shown.exit_code == 0 and json.loads(shown.output)["owner"] == "alice", shown.output


def test_a_jwt_access_token_for_the_audience_is_sent_rather_than_the_id_token(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    issuer.jwt_access = True
    assert run(system, home, "login", "--oidc").exit_code == 0
    assert _session(home)["use"] == "access_token"
    assert run(system, home, "whoami").output.startswith("alice (user)")


@pytest.mark.parametrize(
    ("refusal", "says"),
    [
        ({"error": "access_denied"}, "the login was denied at the issuer; nothing stored"),
        ({"error": "expired_token"}, "the code expired before it was approved"),
        ({"error": "invalid_client", "error_description": "who?"}, "invalid_client: who?"),
    ],
    ids=["denied", "expired", "other"],
)
def test_a_refused_device_login_says_why_and_stores_nothing(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float],
    refusal: dict[str, str], says: str,
) -> None:  # fmt: skip
    issuer.polls = [PENDING, (400, refusal)]
    done = run(system, home, "login")
    assert done.exit_code == 1 and says in done.output, done.output
    assert not (home / "oidc.json").exists() and not (home / "token").exists()


def test_a_token_the_server_refuses_is_not_kept(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    # When the user insists on the access token, which this issuer makes opaque
    done = run(system, home, "login", "--use-access-token")
    # Then the server's refusal is shown and nothing is kept
    assert done.exit_code == 1 and "refused the token" in done.output
    assert "nothing stored" in done.output
    assert not (home / "oidc.json").exists()


def test_a_session_about_to_expire_is_refreshed_and_rewritten(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    # Given a login whose token has 30 s left (less than the 60 s margin)
    issuer.lifetime = 30
    assert run(system, home, "login").exit_code == 0
    before = _session(home)
    # When the next command runs
    issuer.lifetime = 600
    me = run(system, home, "whoami")
    # Then it refreshed first (spending the refresh token once) and rewrote the file, 0600
    assert me.exit_code == 0 and me.output.startswith("alice (user)"), me.output
    refreshed = [f for _, f in issuer.forms if f.get("grant_type") == "refresh_token"]
    assert [f["refresh_token"] for f in refreshed] == ["rt-1"]
    after = _session(home)
    assert after["refresh_token"] == "rt-2" and after["id_token"] != before["id_token"]
    assert after["expires_at"] > before["expires_at"] + 500
    assert _mode(home / "oidc.json") == 0o600
    # And a fresh session is not refreshed again
    assert run(system, home, "whoami").exit_code == 0
    assert len([f for _, f in issuer.forms if f.get("grant_type") == "refresh_token"]) == 1


def test_a_refused_refresh_asks_to_log_in_again(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    issuer.lifetime = 30
    assert run(system, home, "login").exit_code == 0
    kept = (home / "oidc.json").read_text()
    issuer.refreshes = [(400, {"error": "invalid_grant", "error_description": "session ended"})]
    done = run(system, home, "whoami")
    assert done.exit_code == 1
    assert "login expired: run `skypanda login`" in done.output
    assert "invalid_grant: session ended" in done.output
    assert (home / "oidc.json").read_text() == kept


def test_a_local_token_is_checked_then_kept_private(
    system: LocalSystem, home: Path, waits: list[float]
) -> None:
    # Given a user made with `skypanda users add` (here: directly)
    token = system.users.add("bob", Role.USER)
    # When they log in with it on standard input (no issuer configured: a token is the default)
    done = run(system, home, "login", stdin=token + "\n", SKYPANDA_OIDC_ISSUER=None)
    # Then it is kept, 0600, and commands act as bob
    assert done.exit_code == 0 and "logged in as bob (user)" in done.output, done.output
    assert (home / "token").read_text() == token + "\n"
    assert _mode(home / "token") == 0o600
    assert run(system, home, "whoami").output.startswith("bob (user) at ")


def test_a_bad_token_is_refused_and_nothing_is_kept(
    system: LocalSystem, home: Path, waits: list[float]
) -> None:
    done = run(system, home, "login", "--token", stdin="not-a-token\n")
    assert done.exit_code == 1, done.output
    assert "refused the token: invalid bearer token" in done.output
    assert "nothing stored" in done.output
    assert not (home / "token").exists()
    empty = run(system, home, "login", "--token", stdin="\n")
    assert empty.exit_code == 2 and "no token given" in empty.output


def test_a_token_login_ends_an_oidc_login(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    assert run(system, home, "login").exit_code == 0
    done = run(system, home, "login", "--token", stdin=system.token + "\n")
    assert done.exit_code == 0 and "the OIDC login was removed" in done.output
    assert not (home / "oidc.json").exists() and issuer.revoked == ["rt-1"]
    assert "(admin" in run(system, home, "whoami").output


def test_logout_forgets_the_oidc_login_and_keeps_the_token_file_unless_all(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    # Given a token file and an OIDC login (the login is what commands send)
    assert run(system, home, "login", "--token", stdin=system.token + "\n").exit_code == 0
    assert run(system, home, "login").exit_code == 0
    assert run(system, home, "whoami").output.startswith("alice")
    # When the user logs out
    out = run(system, home, "logout")
    # Then the login is gone (its refresh token revoked) and the token file is sent again
    assert out.exit_code == 0 and not (home / "oidc.json").exists()
    assert issuer.revoked == ["rt-1"] and "kept the token" in out.output
    assert "(admin" in run(system, home, "whoami").output
    # And --all removes the token file too
    assert run(system, home, "logout", "--all").exit_code == 0
    assert not (home / "token").exists()
    assert run(system, home, "whoami").exit_code == 1


def test_two_commands_refreshing_at_once_spend_the_refresh_token_once(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    # Given a session about to expire, at an issuer that rotates refresh tokens
    issuer.lifetime = 30
    assert run(system, home, "login").exit_code == 0
    issuer.lifetime = 600
    # When two commands find it due at the same moment
    start = threading.Barrier(2)
    got: list[str | None] = []

    def command() -> None:
        start.wait()
        got.append(current_token(home))

    threads = [threading.Thread(target=command) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then one refreshed (under the lock) and the other read its result
    assert len([f for _, f in issuer.forms if f.get("grant_type") == "refresh_token"]) == 1
    assert got[0] == got[1] == _session(home)["id_token"]


def test_skypanda_token_goes_before_any_login(
    system: LocalSystem, issuer: DeviceIssuer, home: Path, waits: list[float]
) -> None:
    assert run(system, home, "login").exit_code == 0
    me = run(system, home, "whoami", "--json", SKYPANDA_TOKEN=system.token)
    assert json.loads(me.output)["credential"] == "the SKYPANDA_TOKEN variable"
    assert "admin" in json.loads(me.output)["roles"]
