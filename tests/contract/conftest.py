"""Fixtures of the Store contract suite: one `store` per implementation, and a fake clock.

Every test in this directory that takes `store` runs once per backend in `BACKENDS`. A backend
is a small factory that can open a store on its data more than once, so the durability tests
can close a store and open a new one on the same data (a restart).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import pytest
from google.cloud import firestore

from skypanda.adapters.gcp.firestore import FirestoreStore
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain.jobflow import new_job
from skypanda.domain.models import Job, Queue, Resources, Task, TaskSpec
from skypanda.domain.splitter import split
from skypanda.domain.states import TaskStatus
from skypanda.ports import Store
from skypanda.runtime.emulators import PROJECT
from tests.support import FakeClock


class ClosableStore(Store, Protocol):
    def close(self) -> None:
        """Release connections; the data stays (a process exiting)."""
        ...


class Backend(Protocol):
    """One Store implementation under test, with its data kept across `open()` calls."""

    def open(self) -> ClosableStore:
        """A new store on this backend's data (as a restarted process would open it)."""
        ...

    def close(self) -> None:
        """Release everything `open()` made."""
        ...


class SqliteBackend:
    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.path = path
        self.clock = clock
        self._opened: list[SqliteStore] = []

    def open(self) -> SqliteStore:
        store = SqliteStore(self.path, clock=self.clock.now)
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


class FirestoreBackend:
    """Firestore on the emulator: each test gets its own collection prefix, so tests do not see
    each other's data and the emulator needs no reset between them. `bulk_page` is small, so
    the task actions of the suite (`helpers.apply_action`) go over several pages."""

    def __init__(self, prefix: str, clock: FakeClock, *, bulk_page: int | None = 3) -> None:
        self.prefix = prefix
        self.clock = clock
        self.bulk_page = bulk_page
        self._opened: list[FirestoreStore] = []

    def open(self) -> FirestoreStore:
        client = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT))
        store = FirestoreStore(
            client, clock=self.clock.now, prefix=self.prefix, bulk_page=self.bulk_page
        )
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


# Each backend is built from (tmp_path, clock). A backend listed in NEEDS gets that session
# fixture started first (the Firestore emulator: tests/conftest.py; it fails with a clear
# message when the emulator is not installed).
BACKENDS: dict[str, Callable[[Path, FakeClock], Backend]] = {
    "sqlite": lambda tmp_path, clock: SqliteBackend(tmp_path / "skypanda.db", clock),
    "firestore": lambda tmp_path, clock: FirestoreBackend(f"t{uuid4().hex[:12]}-", clock),
}
NEEDS: dict[str, str] = {"firestore": "firestore_emulator"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Backend]:
    if request.param in NEEDS:
        request.getfixturevalue(NEEDS[request.param])
    made = BACKENDS[request.param](tmp_path, clock)
    yield made
    made.close()


@pytest.fixture
def store(backend: Backend) -> ClosableStore:
    return backend.open()


# --- builders ----------------------------------------------------------------------------------


def make_task(
    clock: FakeClock,
    n_jobs: int = 3,
    *,
    task_id: str = "t1",
    queue: str = "q",
    status: TaskStatus = TaskStatus.REGISTERED,
    owner: str = "local",
    **spec: Any,
) -> Task:
    """A task of `n_jobs` jobs on `queue`, created now."""
    now = clock.now()
    return Task(
        id=task_id,
        spec=TaskSpec(
            name=f"task-{task_id}", command=["run", "{index}"], n_jobs=n_jobs, queue=queue, **spec
        ),
        status=status,
        owner=owner,
        n_jobs=n_jobs,
        created_at=now,
        updated_at=now,
    )


def make_jobs(task: Task, now: float) -> list[Job]:
    """The jobs of `task` as the split handler makes them (all activated: no parents)."""
    return [new_job(task, spec, now) for spec in split(task.spec)]


def make_queue(name: str = "q", **fields: Any) -> Queue:
    return Queue(name=name, **fields)


def add_split_task(store: Store, clock: FakeClock, n_jobs: int = 3, **kw: Any) -> list[Job]:
    """Store a task and split it (registered -> ready); return its jobs in index order."""
    task = make_task(clock, n_jobs, **kw)
    store.add_task(task, [])
    jobs = make_jobs(task, clock.now())
    assert store.add_jobs(task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY)
    return jobs


def fits_all() -> Resources:
    """A capacity every default job fits."""
    return Resources(memory_mb=100_000, cores=64)
