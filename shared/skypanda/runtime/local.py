"""The embedded system in one process: SQLite store, router, HTTP server, scaler ticks, pilots.

`skypanda up` runs one in the foreground; `skypanda run` and the tests start a private one.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from skypanda.adapters.clock import SystemClock
from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.doorbell import LocalDoorbell
from skypanda.adapters.local.files import FileBlobs
from skypanda.adapters.local.launcher import ProcessLauncher
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.oidc import oidc_from_env
from skypanda.adapters.pilot_credentials import PilotCredentials, WithPilotCredentials
from skypanda.adapters.webhooks_http import WebhookNotifier
from skypanda.api.app import create_app
from skypanda.api.audit import trusted_proxies_from_env
from skypanda.api.monitor import derive_key
from skypanda.api.server import ApiServer
from skypanda.domain.errors import InvalidInput, NotFound
from skypanda.domain.events import EventType
from skypanda.domain.identity import Role
from skypanda.domain.models import Queue
from skypanda.domain.quota import Quota
from skypanda.domain.watch import SourceKind
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.ports import Store
from skypanda.runtime.home import default_home as default_home  # re-exported
from skypanda.runtime.home import make_home
from skypanda.runtime.launchers import QueueLaunchers
from skypanda.runtime.objects import Poller, list_folder
from skypanda.runtime.router import Router, router_after_reply, tick_event

log = logging.getLogger(__name__)


HTTP_THREADS = 24
"""The local server's request threads (waitress has a fixed pool)."""
LONG_POLLS = HTTP_THREADS - 8
"""Long-poll acquires that may wait at once; the other threads serve everything else. A
pilot whose long-poll finds them all taken gets an empty answer at once and polls."""


def ensure_token(home: Path) -> str:
    """The API token in `<home>/token` (mode 0600), created on first use."""
    make_home(home)
    path = home / "token"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def ensure_pilot_key(home: Path) -> bytes:
    """The key pilots' credentials are signed with, in `<home>/pilot.key` (mode 0600), made on
    first use: kept across restarts, so a restarted server still knows its running pilots."""
    make_home(home)
    path = home / "pilot.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError:
            key = b""
        if len(key) < 32:
            raise InvalidInput(f"{path} is not a pilot key (64 hex digits): remove it") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def ensure_identity(home: Path) -> tuple[LocalTokens, str]:
    """The users of `home` and the token of its first admin.

    On the first start nobody is registered: the person who started skypanda becomes an admin
    (named by their login), with the token in `<home>/token` that the CLI reads, so the
    README's first command needs nothing. Add others with `skypanda users add`.
    """
    tokens = LocalTokens(home / "users.json")
    token = ensure_token(home)
    if not tokens.users():
        tokens.add(_login(), Role.ADMIN, token=token)
    return tokens, token


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "admin"


def default_queue(cores: int | None = None) -> Queue:
    """The `local` queue: up to one pilot per core, none while idle."""
    n = max(1, cores or os.cpu_count() or 1)
    return Queue(name="local", min_pilots=0, max_pilots=n, idle_timeout_s=10.0)


def ensure_queue(store: Store, queue: Queue | None) -> None:
    """Store `queue` if given; otherwise make sure the default `local` queue exists."""
    if queue is not None:
        store.put_queue(queue)
        return
    try:
        store.get_queue("local")
    except NotFound:
        store.put_queue(default_queue())


@dataclass
class LocalOptions:
    """How to run a system: where its state lives, its port (0: any free), how often the
    scaler and sweep tick, whether pilots are launched, and the queue to use. `host` is the
    address to listen on (127.0.0.1; 0.0.0.0 for every interface: pilots on other machines)."""

    home: Path
    port: int = 0
    host: str = "127.0.0.1"
    tick_s: float = 1.0
    launch_pilots: bool = True
    queue: Queue | None = None


class LocalSystem:
    """Everything of the embedded backend, started and stopped together."""

    def __init__(self, opts: LocalOptions) -> None:
        self.opts = opts
        home = opts.home
        make_home(home)
        self.users, self.token = ensure_identity(home)
        # Pilots' own credentials are signed with the key of this home, so that pilots ride
        # out a restart of the server (the same home, the same port) and carry on.
        pilot_key = ensure_pilot_key(home)
        self.pilot_credentials = PilotCredentials(pilot_key)
        self.identity = WithPilotCredentials(self.users, self.pilot_credentials, oidc_from_env())
        clock = SystemClock()
        quota = Quota.from_env(os.environ)  # (a bad value stops here, before the store opens)
        self.store = SqliteStore(home / "skypanda.db", clock=clock.now)
        self.blobs = FileBlobs(home / "blobs")
        self.svc = Services(
            store=self.store, bus=OutboxBus(self.store), blobs=self.blobs, clock=clock,
            quota=quota,
        )  # fmt: skip
        self.svc.notifier = WebhookNotifier()  # webhooks only: no topic here
        self.router = Router(Pipeline(self.svc), self.store)
        self.store.on_events = self.router.nudge
        # A report's job.ended: its children were released in its own request (dispatch)
        self.store.on_lazy_events = self.router.nudge_soon
        self.store.lazy_events = frozenset({EventType.JOB_ENDED})
        # Idle pilots long-poll their acquires: woken when a commit activates jobs on their
        # queue; at most LONG_POLLS of the server's threads wait (the others serve the rest).
        self.doorbell = LocalDoorbell(max_waiters=LONG_POLLS)
        self.svc.doorbell = self.doorbell
        self.store.on_activated = self.doorbell.ring
        self.doorbell.before_wait = self.router.let_go
        app = create_app(
            self.svc, self.identity, trusted_proxies=trusted_proxies_from_env(0),
            session_key=derive_key(pilot_key),  # monitor sessions outlive a restart too
            panda_ddm=str(home / "panda-ddm"),  # PanDA pilots' logs, read back (api.panda)
        )  # fmt: skip
        wsgi = router_after_reply(app, self.router)
        self.server = ApiServer(wsgi, host=opts.host, port=opts.port, threads=HTTP_THREADS)
        self.launcher: ProcessLauncher | None = None
        if opts.launch_pilots:
            # Each pilot gets a launch credential of its own (it may only register that pilot,
            # once), then a credential scoped to itself and short-lived. Never the admin's token.
            self.launcher = ProcessLauncher(
                server_url=self.url, credential_for=self.pilot_credentials.issue_launch, home=home
            )
            local = self.launcher
            self.svc.launcher = QueueLaunchers({"local": lambda queue: local}, {"local": local})
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="skypanda-ticker", daemon=True)
        ensure_queue(self.store, self.opts.queue)
        self.poller = Poller(self.store, {SourceKind.FOLDER: list_folder}, opts.tick_s)

    @property
    def url(self) -> str:
        return self.server.url

    def tick(self) -> None:
        self.router.deliver(tick_event(self.svc.clock.now()))

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.opts.tick_s):
            try:
                self.tick()
            except Exception:  # keep ticking: one bad tick must not stop scaling and sweeping
                log.exception("tick failed")

    def start(self) -> LocalSystem:
        self.server.start()
        self.router.start()
        self.router.nudge()  # deliver what a previous run left in the outbox
        self._ticker.start()
        self.poller.start()
        log.info("skypanda serving on %s (home %s)", self.url, self.opts.home)
        return self

    def stop(self, *, pilots: bool = True) -> None:
        """Stop pilots first (they report their jobs), then the server, router and store.

        `pilots=False` leaves the pilots running, as a server that is killed or restarted does:
        they ride the outage out and report to the next server on the same home and port.
        """
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join(timeout=10)
        self.poller.stop()
        self.doorbell.close()  # long-polls answer now: stopping pilots need not wait them out
        if self.launcher is not None and pilots:
            self.launcher.stop_all()
        self.server.stop()
        self.router.stop()
        self.store.close()

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
