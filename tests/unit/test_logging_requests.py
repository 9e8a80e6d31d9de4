"""A request's log lines carry its trace, the task, job or pilot its path names, and its caller;
nothing of it is left for the next request on the same thread (waitress reuses threads)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.domain.identity import Role
from skypanda.domain.models import Queue
from skypanda.wire import logs
from skypanda.wire.logs import LABELS_KEY, TRACE_KEY, CloudFormatter
from tests.support import FakeClock, sqlite_services

TRACE = "0af7651916cd43dd8448eb211c80319c"


class Entries(logging.Handler):
    """The entries skypanda logs, formatted as they would be written."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.entries: list[dict[str, Any]] = []
        self.setFormatter(CloudFormatter("proj"))

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(json.loads(self.format(record)))


@pytest.fixture
def entries() -> Iterator[Entries]:
    handler, package = Entries(), logging.getLogger("skypanda")
    level = package.level
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)
    yield handler
    package.removeHandler(handler)
    package.setLevel(level)


def test_a_requests_lines_carry_its_trace_path_labels_and_caller(
    tmp_path: Path, entries: Entries
) -> None:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as svc:
        identity = LocalTokens(tmp_path / "users.json")
        token = identity.add("alice", Role.USER)
        client = create_app(svc, identity).test_client()
        auth = {"Authorization": f"Bearer {token}"}
        # When alice submits a task with a trace, then kills it by its path
        traced = {**auth, "traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}
        body = {"name": "t", "command": ["true"], "n_jobs": 2}
        made = client.post("/v1/tasks", json=body, headers=traced)
        assert made.status_code == 201, made.json
        task_id = made.json["id"]
        killed = client.post(f"/v1/tasks/{task_id}/kill", headers=auth)
        assert killed.status_code == 200, killed.json
    # Then the submission's line has the trace and the caller
    [submitted] = [e for e in entries.entries if e.get("event") == "task.submitted"]
    assert submitted[TRACE_KEY] == f"projects/proj/traces/{TRACE}"
    assert submitted[LABELS_KEY] == {"task": task_id, "owner": "alice"}
    # And the kill's lines the task of its path and the caller, and no trace (none was sent)
    kill_lines = [e for e in entries.entries if "killed" in e["message"]]
    assert kill_lines and all(e[LABELS_KEY]["task"] == task_id for e in kill_lines)
    assert all(e[LABELS_KEY]["owner"] == "alice" and TRACE_KEY not in e for e in kill_lines)
    # And nothing is left in this thread's context once the requests ended
    assert logs.current_labels() == {}
    after = logging.LogRecord("skypanda.x", logging.INFO, __file__, 1, "after", None, None)
    assert TRACE_KEY not in json.loads(CloudFormatter("proj").format(after))
