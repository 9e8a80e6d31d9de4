"""The shape of the code: no import cycle (lazy imports included), small modules, a CLI that
starts without Google's clients, one routing table. import-linter (scripts/check) checks the
direction of the arrows; these check what it does not."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.events import PAYLOADS, SUBSCRIBERS, EventType
from skypanda.handlers.routes import HANDLERS

ROOT = Path(__file__).resolve().parents[2] / "shared"
PACKAGE = ROOT / "skypanda"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every skypanda module `name` imports, at the top or inside functions (lazy)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            if target in MODULES and target != name:
                yield target
                break  # `from a import b`: the module b if it is one, else a


def _graph(level: int | None) -> dict[str, set[str]]:
    def cut(module: str) -> str:
        return module if level is None else ".".join(module.split(".")[:level])

    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        for target in _imports(name, path):
            a, b = cut(name), cut(target)
            if a != b:
                graph.setdefault(a, set()).add(b)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


def test_no_module_imports_itself_back_through_others_lazy_imports_included() -> None:
    assert _cycle(_graph(None)) is None


def test_no_package_imports_itself_back() -> None:
    assert _cycle(_graph(2)) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    # Given a graph with a loop (as a lazy import inside a function would make)
    # Then it is reported, in order
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from skypanda.domain import models\n")
    assert list(_imports("skypanda.x", source)) == ["skypanda.domain.models"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name: str) -> None:
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"


def test_the_cli_starts_without_google_clients() -> None:
    # When the CLI module is imported (every `skypanda status` does it)
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import skypanda.cli.main"],
        capture_output=True,
        text=True,
        check=True,
    )
    # Then no Google client, grpc, functions-framework or kubernetes module was loaded
    loaded = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    heavy = sorted(
        m
        for m in loaded
        if m.split(".")[0] in {"google", "grpc", "functions_framework", "kubernetes"}
    )
    assert "skypanda.cli.main" in loaded
    assert heavy == []


def test_every_event_type_has_a_payload_and_handlers_that_exist() -> None:
    assert set(PAYLOADS) == set(EventType) == set(SUBSCRIBERS)
    named = {name for names in SUBSCRIBERS.values() for name in names}
    assert named == set(HANDLERS)
