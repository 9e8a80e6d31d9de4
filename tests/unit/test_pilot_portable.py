"""Specification of the pilot zipapp: stdlib only, Python >= 3.9, the same bytes every build.

The pilot runs in payload images that have a Python and nothing else, so the zipapp must hold
everything it imports and need nothing newer than 3.9. Four checks, each covering another's
blind spot:

- the builder's import closure (ast) refuses third-party imports;
- the zipapp imports with site-packages off (`python -I -S`): nothing is missing from it;
- vermin finds no use of a library or syntax newer than 3.9 in any file it ships;
- where a real Python 3.9 is found ($SKYPANDA_TEST_PYTHON39, `python3.9` on PATH, or pyenv's), it
  imports every module of the zipapp and runs `--help`.
"""

from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda import __version__
from skypanda.api import zipapp
from skypanda.api.zipapp import PilotNotPortable, build_zipapp, closure

TARGET = "3.9"
TYPE_NAMES = {"bool", "bytes", "bytearray", "complex", "dict", "float", "frozenset", "int",
              "list", "object", "set", "str", "tuple", "type"}  # fmt: skip


@pytest.fixture(scope="module")
def archive() -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(build_zipapp()))


@pytest.fixture(scope="module")
def extracted(archive: zipfile.ZipFile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zipapp, unpacked into a directory."""
    root = tmp_path_factory.mktemp("zipapp")
    archive.extractall(root)
    return root


@pytest.fixture(scope="module")
def shipped(archive: zipfile.ZipFile, extracted: Path) -> list[Path]:
    """Every .py file of the zipapp, unpacked."""
    return sorted(extracted / n for n in archive.namelist() if n.endswith(".py"))


def _modules_of(archive: zipfile.ZipFile) -> list[str]:
    names = []
    for name in archive.namelist():
        if name.startswith("skypanda/") and name.endswith(".py"):
            parts = name.removesuffix(".py").split("/")
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def _run_isolated(python: str, code: str, zip_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` with only the standard library and the zipapp on sys.path (-I -S)."""
    prelude = f"import sys; sys.path.insert(0, {str(zip_path)!r})\n"
    return subprocess.run(
        [python, "-I", "-S", "-c", prelude + code], capture_output=True, text=True, timeout=60,
        cwd=zip_path.parent, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pyz") / "pilot.pyz"
    path.write_bytes(build_zipapp())
    return path


# -- the import closure ---------------------------------------------------------------------


def test_closure_is_the_pilot_package_and_what_it_imports() -> None:
    # When the closure is computed from the pilot's imports
    names = {m.name for m in closure()}
    # Then it holds the pilot's modules and the error codes, but not the builder
    assert {"skypanda.pilot", "skypanda.pilot.agent", "skypanda.pilot.client",
            "skypanda.pilot.runner", "skypanda.wire.codes"} <= names  # fmt: skip
    assert zipapp.__name__ not in names
    # And nothing of the server side (pydantic models, handlers, adapters)
    assert not {n for n in names if n.startswith(("skypanda.handlers", "skypanda.adapters"))}
    assert "skypanda.domain.models" not in names


def test_every_import_in_the_closure_is_stdlib_or_the_closure() -> None:
    # Given the closure's modules, read independently of the builder's walk
    names = {m.name for m in closure()}
    for module in closure():
        tree = ast.parse(module.path.read_bytes())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported = [node.module]
            else:
                continue
            # Then each is the standard library or a skypanda module the zipapp carries
            for name in imported:
                top = name.partition(".")[0]
                assert top in sys.stdlib_module_names or name in names, (module.name, name)


@pytest.mark.parametrize(
    "source",
    ["import pydantic\n", "from yaml import safe_load\n", "from skypanda.domain import models\n"],
    ids=["direct", "from-import", "through-a-skypanda-module"],
)
def test_a_third_party_import_refuses_the_build(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pilot module that imports a third-party package, directly or through skypanda
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    roots = [*zipapp._roots(), zipapp.Module("skypanda.pilot.bad", bad)]
    monkeypatch.setattr(zipapp, "_roots", lambda: roots)
    # When the closure is computed, Then it is refused with the import named
    with pytest.raises(PilotNotPortable, match="the pilot must need only the standard library"):
        closure()


def test_imports_under_type_checking_are_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pilot module importing server code only for the type checker
    typed = tmp_path / "typed.py"
    typed.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pydantic\n"
        "else:\n    import json\n"
    )
    monkeypatch.setattr(zipapp, "_roots", lambda: [zipapp.Module("skypanda.pilot.typed", typed)])
    # Then the closure does not need it (it never runs)
    assert [m.name for m in closure()] == ["skypanda.pilot.typed"]


def test_relative_imports_are_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a pilot module importing with relative imports only
    rel = tmp_path / "rel.py"
    rel.write_text("from . import client\nfrom ..wire.codes import ErrorCode\n")
    monkeypatch.setattr(zipapp, "_roots", lambda: [zipapp.Module("skypanda.pilot.rel", rel)])
    # Then the modules they name are in the closure
    names = {m.name for m in closure()}
    assert {"skypanda.pilot.client", "skypanda.wire.codes"} <= names


# -- the archive ----------------------------------------------------------------------------


def test_builds_are_byte_identical() -> None:
    # Given two builds, the per-process cache cleared in between
    first = build_zipapp()
    build_zipapp.cache_clear()
    second = build_zipapp()
    # Then they are equal (the server's ETag depends on it), with fixed entry times
    assert first == second
    assert first.startswith(b"#!/usr/bin/env python3\n")
    infos = zipfile.ZipFile(io.BytesIO(second)).infolist()
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_archive_is_the_closure_plus_stubs_main_and_metadata(archive: zipfile.ZipFile) -> None:
    # Then it holds exactly the closure's files, parent stubs, __main__.py and the metadata
    expected = {m.arcname for m in closure()} | {
        "__main__.py",
        "skypanda/__init__.py",
        "skypanda/wire/__init__.py",
        f"skypanda-{__version__}.dist-info/METADATA",
    }
    assert set(archive.namelist()) == expected
    # And parent packages are stubs that import nothing (skypanda's carries the version)
    for stub in ("skypanda/__init__.py", "skypanda/wire/__init__.py"):
        tree = ast.parse(archive.read(stub))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert f"__version__ = {__version__!r}" in archive.read("skypanda/__init__.py").decode()


def test_zipapp_imports_without_site_packages_and_knows_its_version(zip_path: Path) -> None:
    # When the zipapp's modules are imported by a Python without site-packages
    code = (
        "import importlib, importlib.metadata, skypanda\n"
        f"for name in {_modules_of(zipfile.ZipFile(zip_path))!r}:\n"
        "    importlib.import_module(name)\n"
        "from skypanda.pilot.agent import PILOT_VERSION\n"
        "print(PILOT_VERSION, skypanda.__version__, importlib.metadata.version('skypanda'))\n"
        "tops = {m.partition('.')[0] for m in sys.modules} - {'__main__'}\n"
        "print(sorted(tops - set(sys.stdlib_module_names)))"
    )
    done = _run_isolated(sys.executable, code, zip_path)
    # Then they all import, from the zipapp only, and every source of the version agrees
    assert done.returncode == 0, done.stderr
    versions, outside = done.stdout.splitlines()
    assert versions.split() == [__version__] * 3
    assert outside == "['skypanda']"


def test_zipapp_runs_as_a_program(zip_path: Path) -> None:
    # When it is run as `python3 pilot.pyz --help`, isolated
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(zip_path), "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    # Then the pilot's own usage is printed
    assert done.returncode == 0, done.stderr
    assert "Usage: python3 pilot.pyz [OPTIONS]" in done.stdout and "--token-file" in done.stdout


# -- Python 3.9 ---------------------------------------------------------------------------


def _has_annotations(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            args = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            if node.returns or any(x is not None and x.annotation for x in args):
                return True
    return False


def _defers_annotations(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(a.name == "annotations" for a in node.names)
        for node in tree.body
    )


def _runtime_type_unions(tree: ast.AST) -> Iterator[int]:
    """Lines with `X | Y` of types outside annotations (`int | None`, `list[str] | None`).

    vermin misses these unless its `union-types` feature is on, and that feature also flags
    deferred annotations and `os.O_RDONLY | os.O_NONBLOCK`, so it cannot be used here.
    """

    def is_type(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return node.value is None or isinstance(node.value, str)
        return isinstance(node, ast.Subscript) or (
            isinstance(node, ast.Name) and node.id in TYPE_NAMES
        )

    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        is_or = isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)
        if is_or and (is_type(node.left) or is_type(node.right)):
            yield node.lineno
        skip: set[int] = set()
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            skip.add(id(node.annotation))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            skip.add(id(node.returns))
        todo.extend(c for c in ast.iter_child_nodes(node) if id(c) not in skip)


def test_shipped_files_defer_annotations_and_build_no_runtime_unions(
    shipped: list[Path],
) -> None:
    # vermin is run with annotations unevaluated (its default, --no-eval-annotations): honest
    # only for files with `from __future__ import annotations`, whose annotations 3.9 never
    # evaluates; so every annotated file must have it, and nothing may evaluate annotations.
    for path in shipped:
        text = path.read_text()
        tree = ast.parse(text)
        if _has_annotations(tree):
            assert _defers_annotations(tree), (
                f"{path.name}: add `from __future__ import annotations`"
            )
        assert "get_type_hints" not in text and "__annotations__" not in text, path.name
        lines = list(_runtime_type_unions(tree))
        assert not lines, f"{path.name}: `X | Y` of types needs Python 3.10 (lines {lines})"


def _vermin() -> str:
    found = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if found is None:
        pytest.fail("vermin is not installed: pip install -e '.[test]'")
    return found


def test_shipped_files_need_at_most_python_3_9(shipped: list[Path], extracted: Path) -> None:
    # When vermin checks every file the zipapp ships against Python 3.9
    root = extracted
    done = subprocess.run(
        [_vermin(), "--no-config-file", "--no-tips", "--violations", f"-t={TARGET}-",
         "--no-eval-annotations", "--pessimistic", "--no-make-paths-absolute",
         *(str(p.relative_to(root)) for p in shipped)],
        capture_output=True, text=True, timeout=120, cwd=root, check=False,
    )  # fmt: skip
    # Then nothing needs a newer Python
    assert done.returncode == 0, (
        f"the pilot zipapp must run on Python {TARGET}, but vermin found newer features:\n"
        f"{done.stdout}{done.stderr}"
    )


def _python39() -> str | None:
    pyenv = sorted(Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))
    candidates = (os.environ.get("SKYPANDA_TEST_PYTHON39"), shutil.which("python3.9"), *pyenv)
    for candidate in (str(c) if c else None for c in candidates):
        if not candidate:
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if probe.stdout.strip() == "True":
            return candidate
    return None


def test_zipapp_imports_and_runs_on_a_real_python_3_9(zip_path: Path) -> None:
    python = _python39()
    if python is None:
        pytest.skip("no Python 3.9 (python3.9 on PATH or $SKYPANDA_TEST_PYTHON39)")
    # When Python 3.9 imports every module of the zipapp (compiling it) and runs --help
    names = _modules_of(zipfile.ZipFile(zip_path))
    imported = _run_isolated(
        python, f"import importlib\nfor n in {names!r}:\n    importlib.import_module(n)", zip_path
    )
    helped = subprocess.run(
        [python, "-I", "-S", str(zip_path), "--help"], capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    # Then both succeed
    assert imported.returncode == 0, imported.stderr
    assert helped.returncode == 0, helped.stderr
