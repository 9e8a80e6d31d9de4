"""What an e2e test's system looked like when the test failed: printed in the test's report
(captured stderr of its teardown), so a failure seen once in CI can be read afterwards.

A hang on the emulators (a workflow that never ends) otherwise leaves only the test process's
thread stacks: this adds the documents (workflows, tasks, jobs, pilots, undelivered events)
and the tail of every pilot's log.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

FAILED = pytest.StashKey[bool]()
"""Set on a test item whose setup or call failed (see tests/e2e/conftest.py's hook)."""

LOG_TAIL_LINES = 40
MAX_DOCS = 60

_FIELDS = {
    "workflows": ("status", "reason"),
    "tasks": ("name", "status", "job_counts", "reason"),
    "jobs": ("task_id", "index", "status", "attempt", "pilot_id", "error_code", "parents_left"),
    "pilots": ("status", "queue", "heartbeat_at", "jobs"),
}


def pilot_log_tails(home: Path) -> list[str]:
    lines = []
    for path in sorted((home / "pilots").glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        lines += [f"--- {path.name} (last {len(text)} lines)", *text]
    return lines


def cloud_state(cloud: Any) -> list[str]:
    """The emulated cloud's documents, a line each (the first MAX_DOCS of each collection)."""
    db, store = cloud.firestore, cloud.store
    lines = [f"ticks published: {getattr(cloud, 'ticks', '?')}"]
    for name, fields in _FIELDS.items():
        docs = list(db.collection(store.collection(name)).limit(MAX_DOCS).stream())
        lines.append(f"--- {name}: {len(docs)}")
        for doc in docs:
            data = doc.to_dict() or {}
            shown = {f: data[f] for f in fields if f in data}
            lines.append(f"{doc.id} {shown}")
    events = db.collection(store.collection("events")).limit(500).stream()
    pending = [(e.id, e.to_dict() or {}) for e in events]
    pending = [(i, d) for i, d in pending if not d.get("delivered")]
    lines.append(f"--- events not delivered: {len(pending)}")
    for event_id, data in pending[:MAX_DOCS]:
        lines.append(f"{event_id} {data.get('type')} tries={data.get('tries')}")
    return lines


def report(title: str, lines: list[str]) -> None:
    print(f"\n===== postmortem: {title} =====", *lines, sep="\n", file=sys.stderr)


def dump_cloud(cloud: Any) -> None:
    """Print the cloud's state and its pilots' logs (never raises: a report, not a test)."""
    try:
        lines = cloud_state(cloud)
    except Exception as e:  # the emulator may be what failed
        lines = [f"(cannot read the documents: {e!r})"]
    report("emulated cloud", lines + pilot_log_tails(cloud.opts.home))
