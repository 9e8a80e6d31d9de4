"""The real panda-client (PyPI `panda-client` 2.2.0) for the e2e tests, and the OIDC issuer
its tokens come from.

Installation: panda-client goes into a virtualenv of its own, made once and kept across runs in
`~/.cache/skypanda-tests/panda-client-2.2.0` (never the project's environment: its
dependencies are not skypanda's). `prun` and `pbook` are its bash scripts: they source
`$PANDA_SYS/etc/panda/share/functions.sh` and run `$VIRTUAL_ENV/bin/python`.

Identity: panda-client sends `PANDA_AUTH_ID_TOKEN` as `Authorization: Bearer`, and `pbook` and
`prun` also read the token as a JWT on their own (unverified): `name` names the pbook user,
`preferred_username` is prun's nickname (its `--outDS` must be `user.<nickname>.*`). So the
tokens here are real JWTs, RS256-signed by an OIDC issuer the test serves on 127.0.0.1
(discovery document and JWKS), and skypanda verifies them with its OIDC adapter
(`SKYPANDA_OIDC_ISSUER`) like any provider's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import json_server

CLIENT_VERSION = "2.2.0"
CACHE = Path.home() / ".cache" / "skypanda-tests" / f"panda-client-{CLIENT_VERSION}"
DRIVER = Path(__file__).with_name("panda_client_driver.py")
AUDIENCE = "skypanda-panda-client-test"
VO = "skypanda"


def install_panda_client() -> Path:
    """panda-client's virtualenv: made once (pip from PyPI), then reused. A venv moves
    cleanly here (it finds its packages from where its `bin/python` is), so it is made beside
    the cache and renamed into place: a concurrent run either wins or finds it there."""
    if (CACHE / "bin" / "pbook").exists():
        return CACHE
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=CACHE.parent))
    try:
        venv = build / "venv"
        for command in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
             "--no-input", "--quiet", f"panda-client=={CLIENT_VERSION}"],
        ):  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.fail(f"installing panda-client failed: {command}\n{done.stderr[-3000:]}")
        try:
            venv.rename(CACHE)
        except OSError:
            if not (CACHE / "bin" / "pbook").exists():
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return CACHE


class Issuer:
    """A minimal OIDC provider on 127.0.0.1: one RSA key, its discovery document and JWKS."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.url = ""

    def answer(self, path: str) -> Any:
        if path == "/.well-known/openid-configuration":
            return {"issuer": self.url, "jwks_uri": self.url + "/jwks"}
        if path == "/jwks":
            public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        return None

    def token(self, user: str, name: str) -> str:
        """An ID token for `user` (its `preferred_username`), valid for an hour."""
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": f"sub-{user}", "iat": now,
                  "exp": now + 3600, "preferred_username": user, "name": name,
                  "groups": ["/skypanda"]}  # fmt: skip
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})


@contextmanager
def oidc_issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    with json_server(issuer.answer) as url:
        issuer.url = url
        yield issuer


@dataclass
class Ran:
    """One run of a panda-client command: its exit code and everything it printed."""

    returncode: int
    output: str

    def result(self) -> Any:
        """What the driver printed as `RESULT <json>`."""
        for line in reversed(self.output.splitlines()):
            if line.startswith("RESULT "):
                return json.loads(line.removeprefix("RESULT "))
        raise AssertionError(f"the client printed no result ({self.returncode}):\n{self.output}")


class PandaClient:
    """panda-client pointed at a skypanda server, as its users set it up: `PANDA_URL` and
    `PANDA_URL_SSL` at `/server/panda` (the client calls `/api/v1/...` on that host),
    `PANDA_AUTH=oidc` with the token in `PANDA_AUTH_ID_TOKEN` (None: no credential at all)."""

    def __init__(self, venv: Path, server_url: str, token: str | None, home: Path) -> None:
        self.venv = venv
        home.mkdir(parents=True, exist_ok=True)
        panda = f"{server_url}/server/panda"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "PANDA_SYS": str(venv), "VIRTUAL_ENV": str(venv), "PANDA_URL": panda,
            "PANDA_URL_SSL": panda, "PANDACACHE_URL": panda, "PANDA_BEHIND_REAL_LB": "1",
            "PANDA_CONFIG_ROOT": str(home / ".panda"), "TMPDIR": str(home),
        }  # fmt: skip
        if token is not None:
            env.update(PANDA_AUTH="oidc", PANDA_AUTH_VO=VO, PANDA_AUTH_ID_TOKEN=token)
        self.env = env
        self.home = home

    def run(self, *command: str, cwd: Path | None = None, timeout: float = 120) -> Ran:
        done = subprocess.run(
            command, env=self.env, cwd=cwd or self.home, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        return Ran(done.returncode, done.stdout + done.stderr)

    def prun(self, *args: str, files: dict[str, str] | None = None) -> Ran:
        """The `prun` command, in a directory of its own holding `files` ({name: text}; by
        default none: prun's sandbox of it is then an empty tarball)."""
        workdir = Path(tempfile.mkdtemp(dir=self.home, prefix="prun-"))
        for name, text in (files or {}).items():
            (workdir / name).write_text(text)
        return self.run(str(self.venv / "bin" / "prun"), *args, cwd=workdir)

    def pbook(self, *args: str) -> Ran:
        return self.run(str(self.venv / "bin" / "pbook"), *args)

    def call(self, function: str, *args: Any, timeout: float = 120) -> Ran:
        """A function of `pandaclient.Client`, in a Python process of panda-client's venv."""
        python = str(self.venv / "bin" / "python")
        return self.run(python, str(DRIVER), function, json.dumps(args), timeout=timeout)

    def wait_status(self, task_id: int, *words: str, timeout: float = 90) -> str:
        """getTaskStatus until it says one of `words`; AssertionError with the last answer."""
        ran = self.call("wait_status", task_id, list(words), timeout, timeout=timeout + 60)
        code, status = ran.result()
        if code != 0 or status not in words:
            raise AssertionError(f"task {task_id} is {status!r} ({code}), not {words}:\n"
                                 f"{ran.output}")  # fmt: skip
        return str(status)
