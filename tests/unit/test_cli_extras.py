"""A command whose extra is not installed says which one to install (and the others work)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from skypanda.cli.lazy import LazyGroup, load_module


@pytest.fixture
def missing_google(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module that needs a Google client this environment lacks."""
    (tmp_path / "needs_gcp_mod.py").write_text(
        "import google.cloud.not_installed_here\n"
        "import click\n"
        "@click.command()\n"
        "def cost() -> None:\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "needs_gcp_mod"
    sys.modules.pop("needs_gcp_mod", None)


def test_a_missing_extra_is_named_with_the_install_command(missing_google: str) -> None:
    with pytest.raises(click.ClickException) as e:
        load_module(missing_google, "skypanda bench cost")
    assert "skypanda bench cost needs the 'gcp' extra" in e.value.message
    assert "pip install 'skypanda[gcp]'" in e.value.message


def test_a_missing_module_that_is_no_extra_is_a_plain_import_error() -> None:
    with pytest.raises(ImportError):
        load_module("skypanda_no_such_module", "x")


def test_a_lazy_group_lists_an_unavailable_command_and_it_fails_clearly(
    missing_google: str,
) -> None:
    @click.group(cls=LazyGroup, lazy={"cost": f"{missing_google}:cost"})
    def bench() -> None:
        pass

    @bench.command()
    def local() -> None:
        click.echo("ran")

    runner = CliRunner()
    shown = runner.invoke(bench, ["--help"])
    assert shown.exit_code == 0 and "cost" in shown.output and "not installed" in shown.output
    assert runner.invoke(bench, ["local"]).output == "ran\n"
    failed = runner.invoke(bench, ["cost", "--jobs", "5"])
    assert failed.exit_code == 1 and "pip install 'skypanda[gcp]'" in failed.output
