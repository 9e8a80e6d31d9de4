"""`skypanda deploy manifest` and the parts of `skypanda deploy bundle` that need no build.

The bundle itself (built twice, installed in a clean venv, served by functions-framework) is
checked by tests/functions/test_bundle.py.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from skypanda.cli import deploy as deploy_module
from skypanda.cli.deploy import (
    MANIFEST_PATH,
    BundleError,
    build_bundle,
    find_project,
    main_source,
    manifest_text,
    requirements_text,
    write_zip,
)
from skypanda.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["deploy", *args])
    return result.exit_code, result.output


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- manifest -----------------------------------------------------------------------------------


def test_the_repositorys_manifest_is_what_the_code_makes() -> None:
    # The Terraform reads this file: regenerate it with `skypanda deploy manifest`
    assert (ROOT / MANIFEST_PATH).read_text() == manifest_text()


def test_manifest_writes_the_default_path_and_check_agrees(in_tmp: Path) -> None:
    code, _ = run("manifest")
    assert code == 0
    written = (in_tmp / MANIFEST_PATH).read_text()
    assert written == json.dumps(json.loads(written), indent=2) + "\n"
    assert run("manifest", "--check") == (0, f"{MANIFEST_PATH} is up to date\n")


def test_manifest_check_fails_clearly_on_a_stale_or_missing_file(in_tmp: Path) -> None:
    path = in_tmp / "m.json"
    code, out = run("manifest", "--check", "--out", str(path))
    assert (code, out) == (1, f"{path} is missing; write it with `skypanda deploy manifest`\n")
    path.write_text(manifest_text().replace('"split"', '"splat"', 1))
    code, out = run("manifest", "--check", "--out", str(path))
    assert code == 1 and "stale: it differs from the code" in out
    assert "Traceback" not in out


# -- bundle -------------------------------------------------------------------------------------


def test_main_py_made_from_the_package_is_the_repositorys() -> None:
    assert main_source() == (ROOT / "functions" / "main.py").read_text()


def test_requirements_name_the_wheel_beside_them_with_the_gcp_extra() -> None:
    wheel = "skypanda-1.2-py3-none-any.whl"
    lines = requirements_text(wheel).splitlines()
    assert [ln for ln in lines if not ln.startswith("#")] == [f"./{wheel}[gcp]"]


def test_the_project_is_found_from_any_directory_inside_it() -> None:
    assert find_project(ROOT / "tests" / "unit") == ROOT


def test_without_a_source_tree_the_bundle_says_what_to_do(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an installed skypanda (no repository holds it) run outside any clone
    monkeypatch.setattr(deploy_module, "find_project", lambda start: None)
    code, out = run("bundle")
    assert code == 1
    assert "cannot find the skypanda source tree" in out and "--project" in out
    assert "Traceback" not in out
    code, out = run("bundle", "--project", str(in_tmp))
    assert code == 1 and "is not a skypanda source tree" in out


def test_a_failed_wheel_build_is_reported_with_pips_words(tmp_path: Path) -> None:
    # Given a tree whose build backend does not exist
    (tmp_path / "shared" / "skypanda").mkdir(parents=True)
    (tmp_path / "shared" / "skypanda" / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "no_such_backend"\n'
        '[project]\nname = "skypanda"\nversion = "0"\n'
    )
    # When the bundle is built without a build env
    with pytest.raises(BundleError) as failed:
        build_bundle(tmp_path / "dist", project=tmp_path, isolation=False)
    # Then the error says pip failed, and why
    assert "building the skypanda wheel failed" in failed.value.message
    assert "no_such_backend" in failed.value.message


def test_a_foreign_wheel_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("tests/test_x.py", "")
    with pytest.raises(BundleError, match="not a skypanda wheel"):
        build_bundle(tmp_path / "dist", project=None, wheel=wheel)


def test_the_zip_depends_on_contents_only(tmp_path: Path) -> None:
    # Given the same files written twice, at other times, with other modes, in another order
    zips = []
    for i, names in enumerate((["b", "a/x"], ["a/x", "b"])):
        src = tmp_path / f"src{i}"
        for name in names:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(name)
            (src / name).chmod(0o600 + 0o044 * i)
            os.utime(src / name, (1e9 + i * 1e6, 1e9 + i * 1e6))
        write_zip(src, tmp_path / f"{i}.zip")
        zips.append((tmp_path / f"{i}.zip").read_bytes())
    # Then the zips are the same bytes, entries sorted
    assert zips[0] == zips[1]
    assert zipfile.ZipFile(tmp_path / "0.zip").namelist() == ["a/x", "b"]
