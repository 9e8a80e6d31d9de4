"""skypanda on the emulators, wired as Google Cloud runs it.

State in Firestore, events on Pub/Sub, logs in Cloud Storage (fake-gcs-server); every function
is served by functions-framework (each on its own port, in this process); Pub/Sub push
subscriptions deliver to split/scale/sweep; `OutboxBridge` plays Eventarc for `release`; a
ticker publishes to the tick topic like Cloud Scheduler. Pilots are local processes talking to
the gateway URL, as they would talk to the deployed HTTPS functions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from functions_framework import create_app as create_function

from skypanda.adapters.clock import SystemClock
from skypanda.adapters.gcp.gcs_blobs import GcsBlobs, client_from_env
from skypanda.adapters.gcp.google_ids import google_ids_from_env
from skypanda.adapters.gcp.metering import meter_firestore
from skypanda.adapters.gcp.pubsub_bus import PubSubBus
from skypanda.adapters.gcp.topology import ensure_topology, topic_name
from skypanda.adapters.local.launcher import ProcessLauncher
from skypanda.adapters.oidc import oidc_from_env
from skypanda.adapters.pilot_credentials import PilotCredentials, WithPilotCredentials
from skypanda.api.server import ApiServer
from skypanda.domain.events import EventType
from skypanda.domain.quota import Quota
from skypanda.domain.watch import SourceKind
from skypanda.handlers.services import Services
from skypanda.runtime import cloudfn, emulators, entrypoints
from skypanda.runtime.bridge import OutboxBridge, gateway
from skypanda.runtime.deployment import FUNCTIONS, dispatch_rules
from skypanda.runtime.emulators import Emulator
from skypanda.runtime.gcp import PILOT_LONG_POLL_S, PILOT_REPORT_DELAY_S, cloud_doorbell
from skypanda.runtime.launchers import QueueLaunchers
from skypanda.runtime.local import LocalOptions, ensure_identity, ensure_pilot_key, ensure_queue
from skypanda.runtime.objects import Poller, gcs_lister, list_folder

log = logging.getLogger(__name__)

BUCKET = "skypanda-logs"
GATEWAY_THREADS = 16
"""The gateway's request threads: every request to `submit` and `dispatch` runs on one."""
LONG_POLLS = GATEWAY_THREADS // 2
"""Long-poll acquires that may wait at once (the other threads serve everything else)."""


@dataclass
class EmulatedOptions(LocalOptions):
    """LocalOptions, plus a prefix for collections and topics (one deployment per prefix)."""

    prefix: str = ""
    resend_lost_after_s: float = 300.0  # the sweep sends again what Eventarc/Pub/Sub lost
    drop_delivery: Callable[[str, dict[str, Any]], bool] | None = None  # lose it (tests)


class EmulatedCloud:
    """Everything of the gcp backend on the emulators, started and stopped together."""

    def __init__(self, opts: EmulatedOptions) -> None:
        self.opts = opts
        opts.home.mkdir(parents=True, exist_ok=True)
        self.users, self.token = ensure_identity(opts.home)
        # One key signs the launch credentials the scale function hands pilots and the pilot
        # credentials dispatch issues; both verify with it (on Google Cloud, runtime.gcp derives
        # it the same way in every function instance).
        self.pilot_credentials = PilotCredentials(ensure_pilot_key(opts.home))
        self.identity = WithPilotCredentials(
            self.users, self.pilot_credentials, oidc_from_env(), google_ids_from_env()
        )
        self.emulators: list[Emulator] = []
        self._servers: dict[str, ApiServer] = {}
        self._stop = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick_loop, name="skypanda-scheduler", daemon=True
        )
        self.launcher: ProcessLauncher | None = None
        self.bridge: OutboxBridge | None = None
        self.gateway: ApiServer | None = None
        self.ticks = 0  # Cloud Scheduler publishes (billed as Pub/Sub messages)
        self.poller: Poller | None = None

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    def _start_emulators(self) -> None:
        for start in (emulators.firestore, emulators.pubsub, emulators.storage):
            emu = start()
            self.emulators.append(emu)
            os.environ.update(emulators.env_for(emu))
        self.project = os.environ["GOOGLE_CLOUD_PROJECT"]

    def _services(self) -> Services:
        import google.cloud.pubsub_v1 as pubsub_v1
        from google.cloud import firestore

        from skypanda.adapters.gcp.firestore import FirestoreStore
        from skypanda.adapters.gcp.pubsub_notifier import PubSubNotifier

        clock = SystemClock()
        self.firestore = firestore.Client(project=self.project)
        self.meter = meter_firestore(self.firestore)  # what the functions would be billed
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        self.store = FirestoreStore(self.firestore, clock=clock.now, prefix=self.opts.prefix)
        self.bus = PubSubBus(self.publisher, self.project, prefix=self.topic_prefix)
        self.storage = client_from_env(self.project)
        blobs = GcsBlobs(self.storage, BUCKET, create=True)
        svc = Services(store=self.store, bus=self.bus, blobs=blobs, clock=clock)
        svc.quota = Quota.from_env(os.environ)  # as the functions read it (runtime.gcp)
        # Pilots' long-polls wait on Firestore listeners, as in a dispatch instance; at most
        # LONG_POLLS of the gateway's GATEWAY_THREADS at once.
        self.doorbell = cloud_doorbell(self.firestore, self.store.collection("jobs"), LONG_POLLS)
        svc.doorbell = self.doorbell
        svc.notifier = PubSubNotifier(self.publisher, self.project, prefix=self.topic_prefix)
        svc.settings["resend_lost_after_s"] = self.opts.resend_lost_after_s
        svc.settings["long_poll_s"] = PILOT_LONG_POLL_S  # as the dispatch function tells pilots
        svc.settings["report_delay_s"] = PILOT_REPORT_DELAY_S
        return svc

    def function_url(self, name: str) -> str:
        """Where the entry point `name` is served (Pub/Sub pushes there)."""
        return self._servers[name].url + "/"

    @property
    def topic_prefix(self) -> str:
        return f"{self.opts.prefix}skypanda"

    def _serve(self, name: str, signature: str, threads: int = 4) -> str:
        """Serve the entry point `name` on a port of its own; its URL."""
        app = create_function(name, entrypoints.__file__, signature)  # type: ignore[no-untyped-call]
        server = ApiServer(app, threads=threads)
        server.start()
        self._servers[name] = server
        return server.url + "/"

    def start(self) -> EmulatedCloud:
        self._start_emulators()
        self.svc = self._services()
        cloudfn.configure(self.svc, self.identity)
        self._serve("submit", "http")
        self._serve("dispatch", "http")
        users, pilots = self._servers["submit"].wsgi, self._servers["dispatch"].wsgi
        front = gateway(users, pilots, dispatch_rules())
        self.gateway = ApiServer(front, port=self.opts.port, threads=GATEWAY_THREADS)
        self.gateway.start()
        if self.opts.launch_pilots:
            self.launcher = ProcessLauncher(
                server_url=self.url,
                credential_for=self.pilot_credentials.issue_launch,
                home=self.opts.home,
            )
            local = self.launcher
            self.svc.launcher = QueueLaunchers({"local": lambda queue: local})
        # Each function as deployed (runtime.deployment): scale and sweep with one instance
        # and one request at a time (one decision at a time per deployment).
        served = {
            f.name: self._serve(f.name, "cloudevent", min(4, f.max_instances * f.concurrency))
            for f in FUNCTIONS.values()
            if f.trigger != "http"
        }
        pushed = {f.handler: served[f.name] for f in FUNCTIONS.values() if f.handler}
        ensure_topology(
            self.publisher,
            self.subscriber,
            self.project,
            prefix=self.topic_prefix,
            push_endpoints=pushed,
        )
        # Eventarc's own reads and writes are not the functions' bill: a client of its own.
        watcher = type(self.firestore)(project=self.project)
        self.bridge = OutboxBridge(
            watcher, self.store.collection("events"), served["release"], self.project,
            drop=self.opts.drop_delivery,
        )  # fmt: skip
        self.bridge.start()
        ensure_queue(self.store, self.opts.queue)
        self._ticker.start()
        # Cloud Storage notifications are not emulated: folders and buckets are listed (by a
        # client of its own: not the functions' bill).
        self.poll_store = poll_store = type(self.store)(
            type(self.firestore)(project=self.project), clock=self.svc.clock.now,
            prefix=self.opts.prefix,
        )  # fmt: skip
        self.poller = Poller(
            poll_store,
            {SourceKind.FOLDER: list_folder, SourceKind.GCS: gcs_lister(self.storage)},
            self.opts.tick_s,
        ).start()
        log.info("skypanda (emulators) serving on %s", self.url)
        return self

    def _tick_loop(self) -> None:
        topic = self.publisher.topic_path(
            self.project, topic_name(EventType.TICK, self.topic_prefix)
        )
        while not self._stop.wait(self.opts.tick_s):
            try:
                # As Cloud Scheduler's job sends it (infra/terraform/scheduler.tf).
                self.publisher.publish(topic, b"{}", type=str(EventType.TICK)).result(timeout=10)
                self.ticks += 1
            except Exception:  # keep ticking, like Cloud Scheduler
                log.exception("tick publish failed")

    def stop(self) -> None:
        t = time.monotonic()
        self._stop.set()
        if hasattr(self, "doorbell"):
            self.doorbell.close()  # long-polls answer now: stopping pilots need not wait
        if self._ticker.is_alive():
            self._ticker.join(timeout=10)
        if self.poller is not None:
            self.poller.stop()
            self.poll_store.close()
        if self.launcher is not None:
            self.launcher.stop_all()
        log.info("pilots stopped after %.1f s", time.monotonic() - t)
        if self.bridge is not None:
            self.bridge.stop()
        log.info("bridge stopped after %.1f s", time.monotonic() - t)
        self._stop_servers()
        log.info("servers stopped after %.1f s", time.monotonic() - t)
        for emu in reversed(self.emulators):
            emu.stop()

    def _stop_servers(self) -> None:
        """Stop every function's server and the gateway at once: an idle waitress loop notices
        its stop only at its next select timeout (1 s), so one after the other costs a second
        per server."""
        servers = [*self._servers.values(), *([self.gateway] if self.gateway else [])]
        if servers:
            with ThreadPoolExecutor(len(servers), thread_name_prefix="skypanda-stop") as pool:
                list(pool.map(ApiServer.stop, servers))  # a failed stop raises here

    def __enter__(self) -> EmulatedCloud:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
