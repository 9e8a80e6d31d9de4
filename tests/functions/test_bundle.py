"""The Cloud Functions bundle (`skypanda deploy bundle`), as a deployment would use it.

Built twice from one tree, it is the same bytes (the Terraform names the upload by its hash).
It holds main.py, requirements.txt and the skypanda wheel, and nothing from tests/. Installed
alone in a clean venv (`pip install -r requirements.txt` in its directory, as Cloud Functions'
builder does), it exports every function of the deployment, and functions-framework serves each
one from it without Google credentials: an HTTP function answers the API's JSON errors, a
CloudEvent function refuses a request that is not a CloudEvent.

The install needs PyPI (the gcp extra's dependencies): the test skips, saying so, only when
PyPI cannot be reached.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from skypanda import __version__
from skypanda.cli.deploy import Bundle, build_bundle, main_source
from skypanda.runtime.deployment import FUNCTIONS
from skypanda.runtime.emulators import free_port
from tests.e2e.conftest import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),  # a cold pip cache: the gcp extra is ~60 packages
    pytest.mark.skipif(sys.platform == "win32", reason="functions-framework serves with gunicorn"),
]

ROOT = Path(__file__).resolve().parents[2]
WHEEL = f"skypanda-{__version__}-py3-none-any.whl"
TOKEN = "bundle-test-token"


@functools.cache
def _pypi() -> str | None:
    """Why PyPI (or PIP_INDEX_URL) cannot be reached, or None when it can."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/pip/", timeout=15) as reply:
            reply.read(1)
    except (urllib.error.URLError, OSError) as e:
        return f"{index} is unreachable ({e})"
    return None


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's files the bundle is made from (what CI checks out), so that
    both builds see one tree."""
    copy = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md", "functions/main.py"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, copy / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "shared", copy / "shared", ignore=skip)
    return copy


@pytest.fixture(scope="module")
def bundles(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, Bundle]:
    why = _pypi()  # the wheel's build env (setuptools>=69) comes from it too
    if why is not None:
        pytest.skip(f"cannot build the bundle: {why}")
    outs = [tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")]
    # Built at once (each is a pip subprocess with a build env of its own): two cores, half
    # the wait.
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda out: build_bundle(out, project=tree), outs)
    return first, second


def test_two_builds_of_one_tree_are_the_same_bytes(bundles: tuple[Bundle, Bundle]) -> None:
    first, second = bundles
    assert first.sha256 == second.sha256
    assert first.zip.read_bytes() == second.zip.read_bytes()
    assert first.zip.name == "skypanda-functions.zip" and first.directory.name == "functions"


def test_the_bundle_is_main_requirements_and_the_wheel_and_nothing_from_tests(
    bundles: tuple[Bundle, Bundle], tree: Path
) -> None:
    bundle = bundles[0]
    with zipfile.ZipFile(bundle.zip) as archive:
        assert archive.namelist() == ["main.py", "requirements.txt", WHEEL]
        assert archive.read("main.py").decode() == (tree / "functions/main.py").read_text()
        wheel_bytes = archive.read(WHEEL)
    assert (bundle.directory / WHEEL).read_bytes() == wheel_bytes
    # main.py is also what an installed skypanda (no repository) writes
    assert (bundle.directory / "main.py").read_text() == main_source()
    assert f"./{WHEEL}[gcp]" in (bundle.directory / "requirements.txt").read_text().splitlines()
    # The wheel: every module and data file of the package (every file of its tree: the
    # monitor's templates, scripts and licences too), and nothing else
    with zipfile.ZipFile(bundle.directory / WHEEL) as wheel:
        names = wheel.namelist()
    assert not [n for n in names if "tests/" in n or n.startswith("test")]
    assert {n.split("/")[0] for n in names} == {"skypanda", f"skypanda-{__version__}.dist-info"}
    package = tree / "shared"
    sources = {
        p.relative_to(package).as_posix()
        for p in (package / "skypanda").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {n for n in names if n.startswith("skypanda/")} == sources


# -- installed alone, served by functions-framework ---------------------------------------------


@pytest.fixture(scope="module")
def venv(bundles: tuple[Bundle, Bundle], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the bundle's requirements installed from its directory alone (PyPI:
    reachable, or `bundles` skipped).

    The venv gets no pip of its own: this environment's pip installs into it (`--python`),
    as the builder's pip would. Seeding a venv with the pip bundled with Python costs seconds,
    and that older pip resolves and installs several times slower; what lands in the venv is
    the same (its own interpreter decides markers and paths). Nor are the installed packages
    byte-compiled (`--no-compile`): the test imports a few of their modules, which Python
    compiles when they are imported, not the thousands of files pip would compile first."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    python = home / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    install += ["--no-compile", "-r", "requirements.txt"]
    done = subprocess.run(
        install, cwd=bundles[0].directory, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def _clean_env(**extra: str) -> dict[str, str]:
    """An environment with nothing of this test process's Python or skypanda settings, and no
    probing for a metadata server (there is none here)."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    return {**{k: v for k, v in os.environ.items() if k in keep}, "NO_GCE_CHECK": "true", **extra}


def test_the_installed_bundle_exports_every_function_from_its_own_skypanda(
    venv: Path, bundles: tuple[Bundle, Bundle]
) -> None:
    code = (
        "import json, main, skypanda; "
        "print(json.dumps({'file': skypanda.__file__, "
        "'names': sorted(n for n in dir(main) if callable(getattr(main, n)))}))"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=bundles[0].directory,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout)
    assert Path(found["file"]).is_relative_to(venv)
    assert set(FUNCTIONS) <= set(found["names"])


@dataclass
class Served:
    """One functions-framework server: its target, port and process."""

    target: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.target} exited: {self.log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True


def _configured() -> dict[str, str]:
    """Settings as a deployment gives them, pointing at Google services that are not there:
    the functions build their clients (no call is made before a request needs one)."""
    dead = f"127.0.0.1:{free_port()}"
    return {
        "GOOGLE_CLOUD_PROJECT": "bundle-test",
        "FIRESTORE_EMULATOR_HOST": dead,
        "PUBSUB_EMULATOR_HOST": dead,
        "STORAGE_EMULATOR_HOST": f"http://{dead}",
        "SKYPANDA_BUCKET": "bundle-test",
        "SKYPANDA_TOKEN": TOKEN,
    }


@pytest.fixture(scope="module")
def served(
    venv: Path, bundles: tuple[Bundle, Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    """Every function under functions-framework, started at once from the bundle's directory,
    and `submit` once more with no settings at all ("unconfigured")."""
    logs = tmp_path_factory.mktemp("logs")
    settings = _configured()
    wanted = [(name, name, settings) for name in sorted(FUNCTIONS)]
    wanted.append(("unconfigured", "submit", {}))
    servers: dict[str, Served] = {}
    try:
        for key, target, extra in wanted:
            port, log = free_port(), logs / f"{key}.log"
            command = [str(venv / "bin" / "functions-framework"), "--target", target]
            command += ["--source", "main.py", "--host", "127.0.0.1", "--port", str(port)]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command,
                    cwd=bundles[0].directory,
                    env=_clean_env(**extra),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # gunicorn and its worker: one group to stop
                )
            servers[key] = Served(target, port, process, log)
        for server in servers.values():
            wait_until(server.up, timeout=120, what=f"functions-framework serving {server.target}")
        yield servers
    finally:
        # Killed, not stopped: nothing is left to flush (the tests read the logs while the
        # servers run), and a stopping gunicorn worker ends with a full garbage collection of
        # its heap, which took up to 30 s for the twelve of them on two busy cores.
        for server in servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
        for server in servers.values():
            server.process.wait(timeout=30)


def _call(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_framework_serves_each_function_from_the_bundle(
    name: str, served: dict[str, Served]
) -> None:
    server = served[name]
    if FUNCTIONS[name].trigger == "http":
        # An HTTP function is the API: a request without a token gets its JSON 401
        status, kind, body = _call(f"{server.url}/v1/tasks")
        assert (status, kind) == (401, "application/json"), body
        assert json.loads(body)["error"] == "Unauthorized"
    else:
        # A CloudEvent function: a body that is no CloudEvent is refused before it runs
        headers = {"Content-Type": "application/json"}
        status, _, body = _call(server.url, "POST", b'{"not": "an event"}', headers)
        assert status == 400, body
        assert b"FUNCTION_SIGNATURE_TYPE=cloudevent" in body


def test_the_dispatch_function_serves_the_pilot_to_a_token(served: dict[str, Served]) -> None:
    status, kind, body = _call(
        f"{served['dispatch'].url}/v1/pilot.pyz", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert (status, kind) == (200, "application/zip")
    assert body.startswith(b"#!/usr/bin/env python3\n") and b"__main__.py" in body


def test_a_function_without_its_settings_answers_500_and_logs_what_is_missing(
    served: dict[str, Served],
) -> None:
    # Given `submit` started with no GOOGLE_CLOUD_PROJECT and no Google credentials
    server = served["unconfigured"]
    # When a request arrives (services are built on the first one, not at start)
    status, _, _ = _call(f"{server.url}/v1/tasks")
    # Then it fails, and its log says which setting is missing
    assert status == 500
    wait_until(
        lambda: "set GOOGLE_CLOUD_PROJECT" in server.log.read_text(errors="replace"),
        timeout=30,
        what="the missing setting in the function's log",
    )
