"""`skypanda up` (and what `run` shares with it): start a system, in the foreground, with
one server per home, and every start-up failure said in a sentence."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import signal
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import click

from skypanda import __version__
from skypanda.cli.connect import hold_home, publish_server
from skypanda.cli.lazy import load_module
from skypanda.domain.errors import SkypandaError
from skypanda.runtime.home import default_home

backend_opt = click.option(
    "--backend",
    type=click.Choice(["local", "emulators"]),
    default="local",
    show_default=True,
    help="local: SQLite and processes. emulators: Firestore, Pub/Sub, Cloud Storage emulators "
    "and Cloud Functions under functions-framework.",
)


def make_system(backend: str, home: Path, port: int = 0, host: str = "127.0.0.1") -> Any:
    """A LocalSystem or an EmulatedCloud (both: start/stop, url, token).

    Raises:
        click.ClickException: it cannot be made (the port is taken, the home unusable, ...).
    """
    try:
        if backend == "emulators":
            if host != "127.0.0.1":
                raise click.UsageError("--host works with --backend local only")
            emulated = load_module("skypanda.runtime.emulated", "--backend emulators")
            return emulated.EmulatedCloud(emulated.EmulatedOptions(home=home, port=port))
        from skypanda.runtime.local import LocalOptions, LocalSystem  # only to run one

        return LocalSystem(LocalOptions(home=home, port=port, host=host))
    except click.ClickException:
        raise
    except Exception as e:  # every start-up failure is a sentence, never a traceback
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)  # -vv shows it
        raise click.ClickException(startup_error(e, host, port)) from e


def startup_error(e: BaseException, host: str, port: int) -> str:
    """What went wrong at start-up, in a sentence with what to do (never a traceback)."""
    if isinstance(e, SkypandaError):
        return f"cannot start: {e.message}"
    if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {host}:{port}: the port is in use (another `skypanda up`, or "
            f"another program: `ss -ltnp | grep :{port}` shows which). Choose another with "
            f"--port N, or --port 0 for any free one"
        )
    if isinstance(e, OSError) and e.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no interface of this machine has that address"
    if isinstance(e, socket.gaierror) or (isinstance(e, ValueError) and "host" in str(e)):
        return f"cannot listen on {host!r}: not an address or a known host name of this machine"
    if isinstance(e, OSError) and e.errno == errno.EACCES:
        where = e.filename or f"{host}:{port} (ports below 1024 need root)"
        return f"cannot start: permission denied on {where}"
    if isinstance(e, OSError):
        return f"cannot start: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    return f"cannot start: {type(e).__name__}: {e}"


def pilot_url(host: str, port: int) -> str:
    """The URL pilots on other machines use: the listening address, or this machine's name
    when it listens on every address."""
    from skypanda.api.server import WILDCARDS, url_host  # waitress: only to serve

    if host in WILDCARDS:
        host = socket.getfqdn()
    return f"http://{url_host(host)}:{port}"


def _beyond_loopback(host: str) -> bool:
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve anywhere


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDR",
    help="Address to listen on: 0.0.0.0 for every interface, so that pilots on other "
    "machines reach it (plain HTTP: put a TLS proxy in front beyond a trusted network).",
)
@click.option("--port", default=8470, show_default=True, help="Port to listen on (0: any free).")
@backend_opt
def up(host: str, port: int, backend: str) -> None:
    """Run skypanda in the foreground: server, router, scaler and local pilots.

    Its state lives in the home, $SKYPANDA_HOME (default ~/.skypanda): the SQLite database,
    the logs and outputs (blobs/), your admin token in <home>/token (mode 0600, made on first
    start) and, while it runs, <home>/server.json with its URL, pilot URL and pid: the other
    commands read both. One server per home: a second `up` on it says which one runs.
    """
    logging.getLogger("skypanda").setLevel(logging.INFO)
    home = default_home()
    lock = hold_home(home)
    system = make_system(backend, home, port, host)
    if _beyond_loopback(host):
        click.echo(
            f"warning: listening on {host} without TLS: tokens and job data cross the network "
            "in clear; use it on a trusted network only, or put a TLS proxy in front",
            err=True,
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        system.start()
    except Exception as e:
        logging.getLogger(__name__).debug("start-up failed", exc_info=True)
        system.stop()
        raise click.ClickException(startup_error(e, host, port)) from e
    port = int(urllib.parse.urlsplit(system.url).port or port)
    info = {
        "url": system.url, "pilot_url": pilot_url(host, port), "pid": os.getpid(),
        "backend": backend, "host": host,
    }  # fmt: skip
    server_file = publish_server(lock, home, info)
    click.echo(
        f"skypanda {__version__} ({backend}) serving on {system.url} (home {home}); Ctrl-C stops"
    )
    if info["pilot_url"] != system.url:
        click.echo(f"pilots on other machines: skypanda pilot --server {info['pilot_url']} ...")
    try:
        stop.wait()
        click.echo("stopping: pilots first, then the server", err=True)
    finally:
        system.stop()
        server_file.unlink(missing_ok=True)
        lock.close()
