"""`skypanda deploy`: the files a Google Cloud deployment is made from.

    skypanda deploy manifest [--out PATH] [--check]   the deployment as data, for the Terraform
    skypanda deploy bundle [--out DIR]                the Cloud Functions source, and its zip

The bundle is what `gcloud functions deploy --source DIR` or the Terraform uploads: `main.py`
(the entry points), the skypanda wheel, and a `requirements.txt` naming that wheel with the
`gcp` extra. Cloud Functions' builder runs `pip install -r requirements.txt` in the source
directory, so the wheel is named by a relative path and the functions run exactly the code of
this tree, whatever is (or is not) published on PyPI.

Two builds of one tree give the same bytes: the wheel is built from a copy of the tree with
normalised modes and SOURCE_DATE_EPOCH (honoured by setuptools' wheel writer), and the zip has
sorted entries, fixed times and modes. So a deployment can tell by the zip's sha256 whether the
functions changed at all.

Importing this module costs only click and the standard library (it is loaded with every
`skypanda` command); the deployment's data and its Google imports load when a command runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click

from skypanda.domain.errors import SkypandaError

__all__ = [
    "BUNDLE_ZIP",
    "MANIFEST_PATH",
    "Bundle",
    "BundleError",
    "build_bundle",
    "deploy",
    "find_project",
    "main_source",
    "manifest_text",
    "requirements_text",
]

MANIFEST_PATH = Path("infra", "terraform", "skypanda.json")
BUNDLE_ZIP = "skypanda-functions.zip"
SOURCE_DIR = "functions"
EXTRA = "gcp"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_EPOCH_S = "315532800"  # the same, for SOURCE_DATE_EPOCH when the caller sets none
_SKIP = shutil.ignore_patterns("__pycache__", "*.py[co]", "*.egg-info", ".*")

_MAIN_DOC = '''\
"""Cloud Functions source: the entry points, defined in `skypanda.runtime.entrypoints`.

`skypanda deploy bundle` builds what a deployment uploads from this file: main.py, a
requirements.txt and the skypanda wheel it names. Every function, its trigger and its size are
listed in `skypanda.runtime.deployment.FUNCTIONS` (and `infra/terraform/skypanda.json`): HTTP
(submit, dispatch), Pub/Sub push subscriptions, and release (Firestore document.created on the
outbox collection). This file is written by the code: `skypanda deploy bundle` checks it.
"""
'''


class BundleError(SkypandaError):
    """The bundle could not be built: no source tree, or the wheel build failed."""


@dataclass(frozen=True)
class Bundle:
    """A built bundle: its directory, its zip and the zip's size and sha256."""

    directory: Path
    zip: Path
    wheel: str
    size: int
    sha256: str


# -- the manifest -------------------------------------------------------------------------------


def manifest_text() -> str:
    """`infra/terraform/skypanda.json` as the code makes it (`runtime.deployment.manifest`)."""
    from skypanda.runtime.deployment import manifest

    return json.dumps(manifest(), indent=2) + "\n"


# -- the functions' source ----------------------------------------------------------------------


def main_source() -> str:
    """`functions/main.py`, made from the package (an installed wheel has no repository)."""
    from skypanda.runtime.deployment import FUNCTIONS

    names = sorted(FUNCTIONS)
    imports = "".join(f"    {name},\n" for name in names)
    exported = "".join(f'    "{name}",\n' for name in names)
    return (
        f"{_MAIN_DOC}\nfrom skypanda.runtime.entrypoints import (\n{imports})\n\n"
        f"__all__ = [\n{exported}]\n"
    )


def requirements_text(wheel: str) -> str:
    """The bundle's requirements.txt: the wheel beside it, with the Google Cloud extra."""
    return (
        "# The skypanda wheel beside this file, with its Google Cloud extra. Cloud Functions'\n"
        "# builder runs `pip install -r requirements.txt` in this directory.\n"
        f"./{wheel}[{EXTRA}]\n"
    )


def find_project(start: Path) -> Path | None:
    """The skypanda source tree holding `start` (or this module, for an editable install)."""
    here = Path(__file__).resolve().parents[3]  # shared/skypanda/cli/deploy.py
    for candidate in (start.resolve(), *start.resolve().parents, here):
        if _is_project(candidate):
            return candidate
    return None


def _is_project(path: Path) -> bool:
    import tomllib

    pyproject = path / "pyproject.toml"
    if not (pyproject.is_file() and (path / "shared" / "skypanda" / "__init__.py").is_file()):
        return False
    try:
        return bool(tomllib.loads(pyproject.read_text())["project"]["name"] == "skypanda")
    except (KeyError, TypeError, ValueError, OSError):
        return False


def _copy_sources(project: Path, dest: Path) -> None:
    """What the build backend reads, and nothing else (no tests/, no build/ left over from
    an earlier build): pyproject.toml, its readme, licences, the package directories. Modes
    are normalised so that the wheel does not depend on the checkout's umask."""
    import tomllib

    config = tomllib.loads((project / "pyproject.toml").read_text())
    readme = config["project"].get("readme")
    find = config.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    names = {"pyproject.toml", *([readme] if isinstance(readme, str) else [])}
    names |= {p.name for p in project.glob("LICEN[CS]E*")}
    for name in sorted(names):
        shutil.copyfile(project / name, dest / name)
    for where in find.get("where", ["shared"]):
        shutil.copytree(project / where, dest / where, ignore=_SKIP)
    for path in [dest, *dest.rglob("*")]:
        executable = path.is_dir() or path.stat().st_mode & 0o111
        path.chmod(0o755 if executable else 0o644)


def build_wheel(project: Path, out: Path, *, isolation: bool = True) -> Path:
    """Build the skypanda wheel of `project` into `out` (pip's PEP 517 build, from a copy).

    Raises:
        BundleError: pip failed, or the wheel holds something else than the package.
    """
    with tempfile.TemporaryDirectory(prefix="skypanda-wheel-") as tmp:
        src, built = Path(tmp, "src"), Path(tmp, "wheel")
        src.mkdir()
        _copy_sources(project, src)
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(built)]
        command += [] if isolation else ["--no-build-isolation"]
        env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", _EPOCH_S)}
        env.pop("PYTHONPATH", None)
        done = subprocess.run(
            [*command, str(src)], capture_output=True, text=True, env=env, check=False
        )
        wheels = sorted(built.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            hint = "" if isolation else f"\n{_build_tools(project)}"
            raise BundleError(f"building the skypanda wheel failed (pip wheel):\n{tail}{hint}")
        target = out / wheels[0].name
        shutil.copyfile(wheels[0], target)
    _check_wheel(target)
    return target


def _build_tools(project: Path) -> str:
    """What the build needs and what this Python has (without a build env, it is this one's)."""
    import importlib.metadata
    import tomllib

    config = tomllib.loads((project / "pyproject.toml").read_text())
    wanted = config.get("build-system", {}).get("requires", [])
    have = []
    for requirement in wanted:
        name = re.split(r"[^A-Za-z0-9_.-]", requirement, maxsplit=1)[0]
        try:
            have.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            have.append(f"no {name}")
    return (
        f"--no-build-isolation builds with this Python's tools ({', '.join(have) or 'none'}); "
        f"pyproject.toml asks for {', '.join(wanted) or 'nothing'}"
    )


def _check_wheel(wheel: Path) -> None:
    """Refuse a wheel with anything but the skypanda package and its metadata in it.

    Raises:
        BundleError: naming the first stray entries (e.g. tests/).
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise BundleError(f"{wheel} is not a wheel: {e}") from e
    stray = [n for n in names if not n.startswith(("skypanda/", "skypanda-"))]
    if stray or not any(n.startswith("skypanda/") for n in names):
        raise BundleError(f"{wheel.name} is not a skypanda wheel: it holds {stray[:5]}")


def write_zip(directory: Path, target: Path) -> None:
    """Zip every file of `directory` (paths relative to it) in a byte-reproducible way."""
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, whatever the building host
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial.replace(target)


def build_bundle(
    out: Path, *, project: Path | None, wheel: Path | None = None, isolation: bool = True
) -> Bundle:
    """Write `out/functions/` (main.py, requirements.txt, the wheel) and its zip.

    `project`: the source tree to build the wheel from and take `functions/main.py` from;
    `wheel`: ship this wheel instead of building one (main.py is then made from the package).
    `out/functions/` is emptied first (an older wheel left in it would be uploaded too).

    Raises:
        BundleError: neither a project nor a wheel, or the build failed.
    """
    if project is None and wheel is None:
        raise BundleError("no skypanda source tree to build the wheel from, and no --wheel")
    source = out / SOURCE_DIR
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    if wheel is not None:
        _check_wheel(wheel)
        built = source / wheel.name
        shutil.copyfile(wheel, built)
    else:
        assert project is not None
        built = build_wheel(project, source, isolation=isolation)
    repo_main = project / SOURCE_DIR / "main.py" if project is not None else None
    main = repo_main.read_text() if repo_main is not None and repo_main.is_file() else None
    (source / "main.py").write_text(main or main_source())
    (source / "requirements.txt").write_text(requirements_text(built.name))
    target = out / BUNDLE_ZIP
    write_zip(source, target)
    data = target.read_bytes()
    return Bundle(source, target, built.name, len(data), hashlib.sha256(data).hexdigest())


# -- the commands -------------------------------------------------------------------------------


@click.group()
def deploy() -> None:
    """Build what a Google Cloud deployment is made from (the Terraform reads both)."""


@deploy.command("manifest")
@click.option(
    "--out", default=str(MANIFEST_PATH), show_default=True, type=click.Path(dir_okay=False),
    help="Where to write it (relative to the current directory).",
)  # fmt: skip
@click.option("--check", is_flag=True, help="Write nothing; exit 1 when the file is stale.")
def manifest_command(out: str, check: bool) -> None:
    """The deployment as data: topics, subscriptions, functions, routes, collections, secrets."""
    text, path = manifest_text(), Path(out)
    if check:
        current = path.read_text() if path.is_file() else None
        if current != text:
            state = "missing" if current is None else "stale: it differs from the code"
            click.echo(f"{path} is {state}; write it with `skypanda deploy manifest`", err=True)
            raise SystemExit(1)
        click.echo(f"{path} is up to date", err=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    click.echo(f"wrote {path}", err=True)


@deploy.command("bundle")
@click.option(
    "--out",
    default="dist",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Writes OUT/functions/ and OUT/skypanda-functions.zip.",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, exists=True),
    help="The skypanda source tree (default: the one holding the current directory).",
)
@click.option(
    "--wheel",
    type=click.Path(dir_okay=False, exists=True),
    help="Ship this skypanda wheel instead of building one.",
)
@click.option(
    "--no-build-isolation", "no_isolation", is_flag=True,
    help="Build the wheel with this Python's setuptools (offline), not a fresh build env.",
)  # fmt: skip
def bundle_command(out: str, project: str | None, wheel: str | None, no_isolation: bool) -> None:
    """The Cloud Functions source (`gcloud functions deploy --source OUT/functions`) and its
    zip (for the Terraform); prints the zip's path, size and sha256."""
    root = Path(project) if project else find_project(Path.cwd())
    if project and not _is_project(Path(project)):
        raise click.ClickException(
            f"{project} is not a skypanda source tree (no pyproject.toml "
            "naming skypanda, or no shared/skypanda)"
        )
    if root is None and wheel is None:
        raise click.ClickException(
            "cannot find the skypanda source tree (a directory with pyproject.toml and "
            "shared/skypanda): run this in a clone, or pass --project DIR or --wheel FILE"
        )
    try:
        built = build_bundle(
            Path(out),
            project=root,
            wheel=Path(wheel) if wheel else None,
            isolation=not no_isolation,
        )
    except (BundleError, OSError) as e:
        raise click.ClickException(getattr(e, "message", None) or str(e)) from e
    click.echo(f"{built.zip}  {built.size} bytes  sha256 {built.sha256}")
    click.echo(f"source: {built.directory}/ (main.py, requirements.txt, {built.wheel})", err=True)
