"""The pilot's credential comes from a pipe (launchers) or a file, not only the environment."""

from __future__ import annotations

import io

import pytest

from skypanda.pilot.config import parse_args


def test_the_token_is_read_from_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKYPANDA_TOKEN", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-token\n"))
    cfg = parse_args(["--server", "http://127.0.0.1:1", "--queue", "q", "--token-stdin"])
    assert cfg.token == "s3cret-token"


def test_an_empty_standard_input_is_refused_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(SystemExit):
        parse_args(["--server", "http://127.0.0.1:1", "--queue", "q", "--token-stdin"])
    assert "--token-stdin: no token on standard input" in capsys.readouterr().err
