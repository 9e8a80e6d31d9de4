"""The pilot as one file: a zipapp any Python >= 3.9 runs, served at `GET /v1/pilot.pyz`.

    python3 pilot.pyz --server URL --queue Q --token-file FILE

The archive holds the pilot's import closure inside the skypanda package and nothing else:
every module of `skypanda.pilot` (but this builder), every skypanda module they import, found
by reading their imports with `ast` (a hand-kept list would drift), and stub `__init__.py`
files for parent packages that are only on the way to an imported module (`skypanda`,
`skypanda.domain`), so that importing them cannot pull in pydantic and the rest of the server.
An import of anything else than the standard library and skypanda is refused: a payload image
has only a Python.

The bytes are deterministic (sorted entries, fixed timestamps and modes), so the server can
serve them with an ETag, and built once per process.
"""

from __future__ import annotations

import ast
import functools
import io
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from skypanda import __version__
from skypanda.domain.errors import SkypandaError

__all__ = ["ENTRY", "Module", "PilotNotPortable", "build_zipapp", "closure"]

ENTRY = "skypanda.pilot.agent"
"""The module whose `main()` the zipapp's `__main__.py` runs."""

SHEBANG = b"#!/usr/bin/env python3\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_ROOT = Path(__file__).resolve().parents[1]  # the skypanda package directory
_PILOT = "skypanda.pilot"
_BUILDER = __name__  # this module builds the zipapp; the pilot does not need it

_MAIN = '''"""Run the skypanda pilot: python3 pilot.pyz --server URL --queue Q --token-file FILE."""

import sys

from skypanda.pilot.agent import main

sys.exit(main())
'''


class PilotNotPortable(SkypandaError):
    """The pilot imports something a bare Python does not have: the zipapp is not built."""


@dataclass(frozen=True)
class Module:
    """A skypanda module in the zipapp: its dotted name and source file."""

    name: str
    path: Path

    @property
    def arcname(self) -> str:
        """Its path inside the archive, e.g. `skypanda/pilot/agent.py`."""
        return self.path.relative_to(_ROOT.parent).as_posix()

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def _find(name: str) -> Module | None:
    """The skypanda module `name` (a dotted name), or None if there is none."""
    base = _ROOT.parent.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return Module(name, path)
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, but those under `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the body never runs
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _imported_names(module: Module) -> set[str]:
    """The dotted names of the modules `module` imports (maybe submodules: checked later)."""
    tree = ast.parse(module.path.read_bytes(), filename=str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    names: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: `from . import x`, `from ..domain import codes`
            parts = package.split(".")
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _follow(importer: Module, name: str) -> Module | None:
    """The skypanda module an import of `name` needs, None for the standard library.

    Raises:
        PilotNotPortable: `name` is neither in the standard library nor a skypanda module.
    """
    top = name.partition(".")[0]
    if top in sys.stdlib_module_names:
        return None
    if top == "skypanda":
        found = _find(name)
        if found is not None:
            return found
        if _find(name.rpartition(".")[0]) is not None:
            return None  # `from skypanda.x import NAME`: NAME is not a module (seen as x)
    raise PilotNotPortable(
        f"the pilot must need only the standard library, but {importer.name} imports {name}",
        module=importer.name,
        imported=name,
    )


def _roots() -> list[Module]:
    """Every module of the pilot package, but this builder."""
    package = _ROOT / "pilot"
    roots = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(_ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != _BUILDER:
            roots.append(Module(name, path))
    return roots


def closure() -> list[Module]:
    """The skypanda modules the pilot imports, transitively, sorted by name.

    Parent packages are not in it unless imported by name: importing `skypanda.wire.codes`
    runs `skypanda/domain/__init__.py`, but the zipapp gives it a stub.

    Raises:
        PilotNotPortable: a module of the closure imports a third-party module.
    """
    seen = {m.name: m for m in _roots()}
    todo = list(seen.values())
    while todo:
        module = todo.pop()
        for name in sorted(_imported_names(module)):
            found = _follow(module, name)
            if found is not None and found.name not in seen:
                seen[found.name] = found
                todo.append(found)
    return [seen[name] for name in sorted(seen)]


def _stub(package: str) -> str:
    text = f'"""Stub of {package}: the pilot zipapp holds only the pilot and what it imports."""\n'
    if package == "skypanda":
        text += f"\n__version__ = {__version__!r}\n"
    return text


def _dist_info() -> tuple[str, str]:
    """Metadata so that `importlib.metadata.version("skypanda")` works inside the zipapp."""
    version = __version__
    text = f"Metadata-Version: 2.1\nName: skypanda\nVersion: {version}\n"
    return f"skypanda-{version}.dist-info/METADATA", text


def _entries() -> dict[str, bytes]:
    """Archive path -> content: the closure, stubs for its parent packages, __main__.py."""
    modules = closure()
    entries = {m.arcname: m.path.read_bytes() for m in modules}
    names = {m.name for m in modules}
    for module in modules:
        parts = module.name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            arcname = "/".join(parts[:i]) + "/__init__.py"
            if parent not in names and arcname not in entries:
                entries[arcname] = _stub(parent).encode()
    meta_name, meta = _dist_info()
    entries[meta_name] = meta.encode()
    entries["__main__.py"] = _MAIN.encode()
    return entries


@functools.cache
def build_zipapp() -> bytes:
    """The pilot zipapp: a shebang line, then a zip archive; the same bytes on every call.

    Raises:
        PilotNotPortable: the pilot imports a module outside the standard library and skypanda.
    """
    buffer = io.BytesIO()
    buffer.write(SHEBANG)  # a zip reader finds the archive from its end: a prefix is fine
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname, data in sorted(_entries().items()):
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, whatever the building host
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()
