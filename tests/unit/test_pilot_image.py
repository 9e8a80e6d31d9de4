"""The pilot image (`infra/pilot/Dockerfile`) and the pilot starter (`infra/pilot/README.md`),
checked against the code without a Docker engine.

The Dockerfile is read with a small parser (FROM, RUN, COPY, ENV, USER, ENTRYPOINT): its base
is pinned, its user is not root, its entrypoint is the command the Cloud Run and GKE launchers
set, and the environment and arguments those launchers give configure the pilot as they mean
to. Its build steps are run for real here (all but the `pip install`: the package is installed
in this environment), and the entrypoint is started on what they made, with no site-packages.
The README's starter lines are run against a real server with a launcher token.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from werkzeug.serving import make_server

from skypanda.adapters.gcp import cloudrun_jobs
from skypanda.adapters.gcp.gke_launcher import DEFAULT_COMMAND, GkeLauncher
from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.pilot_credentials import PilotCredentials, WithPilotCredentials
from skypanda.api.app import create_app
from skypanda.api.zipapp import build_zipapp
from skypanda.domain.identity import Role
from skypanda.domain.launchers import CloudRunLauncherSpec, GkeLauncherSpec
from skypanda.domain.models import Job, Queue, Resources
from skypanda.domain.states import JobStatus
from skypanda.pilot.config import parse_args
from tests.support import FakeClock, sqlite_services

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the pilot is POSIX only")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "pilot" / "Dockerfile"
README = ROOT / "infra" / "pilot" / "README.md"
SERVER = "https://skypanda.example.org"
KEY = b"k" * 32

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) of each instruction: continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(text: str) -> list[list[Instruction]]:
    """The build stages, each from its FROM on."""
    found: list[list[Instruction]] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            found.append([])
        assert found, f"{keyword} before the first FROM"
        found[-1].append((keyword, rest))
    return found


def only(stage: list[Instruction], keyword: str) -> str:
    values = [rest for kw, rest in stage if kw == keyword]
    assert len(values) == 1, f"expected one {keyword}, found {values}"
    return values[0]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """ENV KEY=VALUE pairs (the form the Dockerfile uses)."""
    pairs = [p for kw, rest in stage if kw == "ENV" for p in shlex.split(rest)]
    assert all("=" in p for p in pairs), pairs
    return dict(p.split("=", 1) for p in pairs)


@pytest.fixture(scope="module")
def image() -> list[list[Instruction]]:
    return stages(DOCKERFILE.read_text())


# -- the Dockerfile, read -----------------------------------------------------------------------


def test_every_stage_starts_from_one_pinned_slim_python_3_11(
    image: list[list[Instruction]],
) -> None:
    bases = [only(stage, "FROM").split()[0] for stage in image]
    # A patch-level tag (a digest may follow), never a moving `3.11-slim` or `latest`
    pinned = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
    assert all(pinned.match(b) for b in bases), bases
    assert len(set(bases)) == 1, f"the stages should share one base: {bases}"


def test_the_image_runs_as_a_user_that_is_not_root_from_before_its_entrypoint(
    image: list[list[Instruction]],
) -> None:
    final = [kw for kw, _ in image[-1]]
    user = only(image[-1], "USER")
    uid, _, gid = user.partition(":")
    assert uid not in {"root", "0"} and gid not in {"root", "0"}
    assert uid.isdigit(), "numeric, so that Kubernetes' runAsNonRoot can check it"
    assert final.index("USER") < final.index("ENTRYPOINT")
    # And the user exists in the image with that uid
    assert any(kw == "RUN" and f"--uid {uid}" in rest for kw, rest in image[-1])
    assert only(image[-1], "HEALTHCHECK") == "NONE"  # a batch process, not a server


def test_the_entrypoint_is_the_command_the_launchers_set(image: list[list[Instruction]]) -> None:
    # Cloud Run and Kubernetes replace ENTRYPOINT with the container's command: the image
    # must run the pilot under exactly that command, and does the same without it
    entrypoint = json.loads(only(image[-1], "ENTRYPOINT"))  # exec form: PID 1 gets SIGTERM
    assert entrypoint == cloudrun_jobs.PILOT_COMMAND == list(DEFAULT_COMMAND)
    assert gke_pilot(None).command == entrypoint
    assert list(cloudrun_template().template.template.containers[0].command) == entrypoint


def test_no_secret_is_baked_into_the_image(image: list[list[Instruction]]) -> None:
    # No setting of skypanda's (they come from the launchers), no secret-looking variable
    assert not [rest for stage in image for _, rest in stage if "SKYPANDA_" in rest]
    names = {k for stage in image for k in env_of(stage)}
    names |= {rest.split("=")[0].split()[0] for st in image for kw, rest in st if kw == "ARG"}
    assert not {n for n in names if re.search(r"TOKEN|SECRET|KEY|PASSWORD|CREDENTIAL", n)}
    copied = [rest for stage in image for kw, rest in stage if kw in {"COPY", "ADD"}]
    assert not [c for c in copied if re.search(r"token|secret|key|\.json|\.pem", c, re.I)]


# -- the launchers' environment and arguments configure the pilot -------------------------------

# What each variable a launcher sets becomes in the pilot's configuration (pilot/config.py).
PILOT_SETTINGS = {
    "SKYPANDA_SERVER": "server",
    "SKYPANDA_QUEUE": "queue",
    "SKYPANDA_PILOT_ID": "pilot_id",
    "SKYPANDA_TOKEN": "token",
    "SKYPANDA_PUSH_JOB": "job_id",
    "SKYPANDA_STOP_GRACE": "stop_grace_s",
}


def push_job() -> Job:
    return Job(
        id="job-7",
        task_id="t1",
        index=0,
        status=JobStatus.ACTIVATED,
        queue="q",
        command=["true"],
        resources=Resources(memory_mb=2048, cores=2, walltime_s=600),
        created_at=1.0,
        updated_at=1.0,
    )


def gke_queue() -> Queue:
    spec = GkeLauncherSpec(kind="gke", image="example.org/skypanda-pilot:1")
    return Queue(name="q", pilot_resources=Resources(memory_mb=1024, cores=1), launcher=spec)


def cloudrun_spec() -> CloudRunLauncherSpec:
    return CloudRunLauncherSpec(
        kind="cloudrun", project="my-project", region="europe-west1", job="skypanda-q",
        image="example.org/skypanda-pilot:1",
    )  # fmt: skip


def cloudrun_template() -> Any:
    queue = Queue(name="q", pilot_resources=Resources(memory_mb=1024, cores=1))
    return cloudrun_jobs.job_template(
        cloudrun_spec(), queue, SERVER, Resources(memory_mb=2048, cores=2), side=False
    )


def cloudrun_container(job: Job | None) -> tuple[list[str], dict[str, str]]:
    """Args and environment of a Cloud Run pilot: the job's template, then the run's overrides
    (which merge by name)."""
    container = cloudrun_template().template.template.containers[0]
    run = cloudrun_jobs.run_request("jobs/skypanda-q", cloudrun_spec(), "p-1", job, "launch-p-1")
    env = {e.name: e.value for e in container.env}
    env |= {e.name: e.value for e in run.overrides.container_overrides[0].env}
    return list(container.args), env


def gke_pilot(job: Job | None) -> Any:
    """The pilot's container in the Job the GKE launcher creates."""
    launcher = GkeLauncher(
        k8s.ApiClient(), server_url=SERVER, credential_for=lambda pilot: f"launch-{pilot}"
    )
    manifest: Any = launcher.manifest(gke_queue(), "p-1", job)
    return manifest.spec.template.spec.containers[0]


def gke_container(job: Job | None) -> tuple[list[str], dict[str, str]]:
    container = gke_pilot(job)
    return list(container.args), {e.name: e.value for e in container.env}


@pytest.mark.parametrize("launcher", [cloudrun_container, gke_container], ids=["cloudrun", "gke"])
@pytest.mark.parametrize("mode", ["pull", "push"])
def test_the_launchers_environment_and_arguments_configure_the_pilot(
    launcher: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the container a launcher asks for (pull mode, or push mode for one job)
    args, env = launcher(push_job() if mode == "push" else None)
    # And nothing else of skypanda's in the environment
    for name in [n for n in os.environ if n.startswith("SKYPANDA_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # When the pilot reads its configuration (the image's entrypoint passes the args on)
    cfg = parse_args(args)
    # Then every variable the launcher sets reached the pilot, and the size is the container's
    assert set(env) <= set(PILOT_SETTINGS), f"a variable the pilot may ignore: {set(env)}"
    for name, value in env.items():
        got = getattr(cfg, PILOT_SETTINGS[name])
        assert (got if isinstance(got, str) else str(float(got))) == (
            value if isinstance(got, str) else str(float(value))
        ), (name, got, value)
    assert {"SKYPANDA_SERVER", "SKYPANDA_QUEUE", "SKYPANDA_PILOT_ID", "SKYPANDA_TOKEN"} <= set(env)
    assert cfg.job_id == ("job-7" if mode == "push" else None)
    assert (cfg.memory_mb, cfg.cores) == (int(args[1]), int(args[3]))


# -- the build steps, run without Docker --------------------------------------------------------


def _localise(step: str, out: Path) -> list[str] | str:
    """A build step as it runs here: /out in `out`, this Python for `python` and `skypanda`."""
    step = step.replace("/out", str(out))
    if step.startswith("skypanda "):
        return f"{shlex.quote(sys.executable)} -m {step}"
    if step.startswith("python "):
        return f"{shlex.quote(sys.executable)} {step.removeprefix('python ')}"
    return step


def test_the_build_steps_make_a_pilot_that_the_launchers_command_runs(
    image: list[list[Instruction]], tmp_path: Path
) -> None:
    build, final = image[0], image[-1]
    # Given the build stage's steps: install the package, then make the pilot with its commands
    steps = [s.strip() for s in only(build, "RUN").split("&&")]
    assert re.match(r"^python -m pip install .* \.$", steps[0]), steps[0]
    assert any(s.startswith("skypanda pilot-zipapp ") for s in steps)
    assert only(build, "WORKDIR") == "/src" and ("COPY", "shared/ shared/") in build
    # When they run here (the package is installed; the repository stands for /src)
    out = tmp_path / "out"
    for step in steps[1:]:
        subprocess.run(_localise(step, out), shell=True, cwd=ROOT, check=True)
    # Then the zipapp is the very file the server serves
    assert (out / "pilot.pyz").read_bytes() == build_zipapp()
    # And what the final stage copies, on its PYTHONPATH, runs the launchers' command with no
    # site-packages at all (the image has none of skypanda's dependencies)
    copies = {}  # destination in the image -> source in the build stage
    for keyword, rest in final:
        if keyword == "COPY" and rest.startswith("--from=build "):
            _, source, destination = rest.split()
            copies[destination] = source
    pythonpath = env_of(final)["PYTHONPATH"]
    assert pythonpath in copies, f"PYTHONPATH {pythonpath} is not copied from the build"
    lib = out / Path(copies[pythonpath]).relative_to("/out")
    entrypoint = json.loads(only(final, "ENTRYPOINT"))
    assert entrypoint[0] == "python3"
    command = [sys.executable, "-S", *entrypoint[1:], "--memory-mb", "512", "--cores", "1"]
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(lib)}
    done = subprocess.run(
        [*command, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: skypanda pilot [OPTIONS]")


# -- the pilot starter --------------------------------------------------------------------------


def starter_lines() -> list[str]:
    """The README's starter one-liners: the lines of its code block that fetch pilot.pyz."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    lines = [ln for b in blocks for ln in b.splitlines() if "/v1/pilot.pyz" in ln]
    assert len(lines) == 2, lines
    return lines


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The API over real HTTP, with a launcher token and a pilot's launch credential."""
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as svc:
        people = LocalTokens(tmp_path / "users.json")
        tokens = {
            "launcher": people.add("starter", Role.LAUNCHER),
            "launch credential": PilotCredentials(KEY).issue_launch("p-1"),
        }
        app = create_app(svc, WithPilotCredentials(people, PilotCredentials(KEY)))
        http = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{http.server_port}", tokens
        finally:
            http.shutdown()
            thread.join(timeout=10)


@pytest.mark.parametrize("line", starter_lines(), ids=["curl", "python"])
def test_a_starter_line_fetches_the_pilot_with_a_launcher_token_and_runs_it(
    line: str, server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    if line.startswith("curl") and shutil.which("curl") is None:
        pytest.skip("no curl on this machine (the python line is checked without it)")
    url, tokens = server
    # Given a machine with a python3, the server's URL, a queue and a launcher token
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPANDA_", "PYTHON"))}
    env |= {"SKYPANDA_SERVER": url, "SKYPANDA_QUEUE": "local", "SKYPANDA_TOKEN": tokens["launcher"]}
    # When the README's line runs (with the file in this test's directory, and --help)
    script = line.replace("/tmp/pilot.pyz", str(tmp_path / "pilot.pyz")) + " --help"
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # Then it downloaded the server's pilot and ran it
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: python3 pilot.pyz [OPTIONS]")
    assert (tmp_path / "pilot.pyz").read_bytes() == build_zipapp()


def test_a_launch_credential_fetches_the_pilot(server: tuple[str, dict[str, str]]) -> None:
    # What the launchers put in SKYPANDA_TOKEN downloads the pilot (a starter in any image with
    # python3), and then registers its pilot
    url, tokens = server
    headers = {"Authorization": f"Bearer {tokens['launch credential']}"}
    request = urllib.request.Request(f"{url}/v1/pilot.pyz", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.read() == build_zipapp()
