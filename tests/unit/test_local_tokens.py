"""Local tokens: users in a file, tokens kept only as hashes (adapters/local/tokens.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from skypanda.adapters.local.tokens import LocalTokens, token_hash
from skypanda.domain.errors import Conflict, InvalidInput, NotFound, Unauthorized
from skypanda.domain.identity import Principal, Role
from skypanda.runtime.local import ensure_identity


def test_a_new_users_token_works_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    tokens = LocalTokens(tmp_path / "users.json")
    token = tokens.add("alice", Role.USER)
    assert tokens.authenticate(token) == Principal("alice", frozenset({Role.USER}))
    text = (tmp_path / "users.json").read_text()
    assert token not in text and token_hash(token) in text
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600


def test_unknown_and_revoked_tokens_are_refused(tmp_path: Path) -> None:
    tokens = LocalTokens(tmp_path / "users.json")
    token = tokens.add("bob")
    with pytest.raises(Unauthorized, match="invalid bearer token"):
        tokens.authenticate("not-a-token")
    tokens.revoke("bob")
    with pytest.raises(Unauthorized):
        tokens.authenticate(token)
    with pytest.raises(NotFound):
        tokens.revoke("bob")


def test_a_change_by_another_process_is_seen_at_the_next_request(tmp_path: Path) -> None:
    # Given a running server's identity, and `skypanda users add` run meanwhile (another object
    # on the same file, as another process would be)
    server = LocalTokens(tmp_path / "users.json")
    server.add("first")
    token = LocalTokens(tmp_path / "users.json").add("carol", Role.ADMIN)
    assert server.authenticate(token).admin
    LocalTokens(tmp_path / "users.json").revoke("carol")
    with pytest.raises(Unauthorized):
        server.authenticate(token)


def test_names_and_duplicates_are_checked(tmp_path: Path) -> None:
    tokens = LocalTokens(tmp_path / "users.json")
    tokens.add("dave")
    with pytest.raises(Conflict, match="exists"):
        tokens.add("dave")
    with pytest.raises(InvalidInput, match="bad user name"):
        tokens.add("no spaces")


def test_a_damaged_users_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_text(json.dumps({"users": [{"name": "x"}]}))
    with pytest.raises(InvalidInput, match=r"users\.json: bad user entry"):
        LocalTokens(tmp_path / "users.json").users()


def test_tokens_issued_in_memory_are_never_written(tmp_path: Path) -> None:
    tokens = LocalTokens(tmp_path / "users.json")
    token = tokens.issue("pilots", Role.PILOT)
    assert tokens.authenticate(token).roles == {Role.PILOT}
    assert not (tmp_path / "users.json").exists()
    with pytest.raises(Unauthorized):
        LocalTokens(tmp_path / "users.json").authenticate(token)


def test_the_first_start_makes_an_admin_of_the_token_file(tmp_path: Path) -> None:
    identity, token = ensure_identity(tmp_path)
    assert (tmp_path / "token").read_text().strip() == token
    assert identity.authenticate(token).admin
    # And a second start keeps the same users
    again, same = ensure_identity(tmp_path)
    assert same == token and len(again.users()) == 1
