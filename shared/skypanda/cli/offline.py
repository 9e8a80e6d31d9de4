"""Reading a home without its server: `skypanda status|jobs|logs --home DIR`.

A finished `skypanda run` leaves its state in a home of its own (`runs/<time>/`): the SQLite
store and the blobs (logs, outputs). `HomeReader` answers the CLI's GET calls from them
directly, through the same routes, access checks and JSON shapes as the server (the API app
over the home's store, called in-process: no socket, no router, no pilot), so every view reads
the same whether a server runs or not. It only reads: nothing is dispatched, and a write
(kill, retry, ...) is refused with what to do instead. Imported only when used (it loads the
server's whole stack).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skypanda.adapters.clock import SystemClock
from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.files import FileBlobs
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.handlers.services import Services
from skypanda.pilot.client import ApiError

DATABASE = "skypanda.db"


class HomeReader:
    """An `ApiClient` look-alike for GET calls, over a stopped home's store and blobs."""

    def __init__(self, home: Path, token: str | None) -> None:
        db = home / DATABASE
        if not db.is_file():
            raise ApiError(404, f"no skypanda state in {home} (no {DATABASE}): is it a home?")
        clock = SystemClock()
        self.store = SqliteStore(db, clock=clock.now)
        blobs = FileBlobs(home / "blobs")
        svc = Services(store=self.store, bus=OutboxBus(self.store), blobs=blobs, clock=clock)
        self.app = create_app(svc, LocalTokens(home / "users.json"), ("user", "monitor"))
        self.token = token
        self.home = home

    def call(
        self, method: str, path: str, body: object = None, *, params: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:  # fmt: skip
        """Answer a GET as the server would (decoded JSON, or text).

        Raises:
            ApiError: a write (this reads only), or the route's own error (404, 403, ...).
        """
        if method != "GET":
            raise ApiError(
                409, f"{self.home} is read without a server: start one on it to change "
                f"anything (SKYPANDA_HOME={self.home} skypanda up)",
            )  # fmt: skip
        query = {k: v for k, v in (params or {}).items() if v is not None}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with self.app.test_client() as client:
            answer = client.get(path, query_string=query, headers=headers)
            data = answer.get_data()
        if answer.status_code >= 400:
            try:
                message = json.loads(data)["message"]
            except (ValueError, KeyError, TypeError):
                message = data.decode(errors="replace")[:200]
            raise ApiError(answer.status_code, str(message))
        if answer.mimetype == "application/json":
            return json.loads(data)
        return data.decode(errors="replace")

    def close(self) -> None:
        self.store.close()
