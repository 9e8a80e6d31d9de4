"""The meter counts what Firestore bills, on the emulator, for each kind of call the store makes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

from skypanda.adapters.gcp.metering import FirestoreMeter, meter_firestore, operation
from skypanda.runtime.emulators import Emulator


@pytest.fixture
def client(firestore_emulator: Emulator) -> Iterator[Any]:
    c = firestore.Client()
    yield c
    c.close()  # type: ignore[no-untyped-call]


def test_reads_writes_and_deletes_are_counted_as_billed(client: Any) -> None:
    # Given a metered client and a fresh collection
    meter = meter_firestore(client)
    col = client.collection(f"m{uuid.uuid4().hex[:8]}")
    # When three documents are written, then read back in every way the store reads
    for i in range(3):
        col.document(f"d{i}").set({"v": i})
    assert meter.snapshot() == {"reads": 0, "writes": 3, "deletes": 0}
    list(col.stream())  # a query returning 3 documents: 3 reads
    list(col.where(filter=FieldFilter("v", "==", 99)).stream())  # an empty query: 1 read
    col.document("d0").get()  # a get: 1 read
    col.count().get()  # an aggregation over 3 entries: 1 read
    assert meter.snapshot()["reads"] == 6
    # And a batch with a delete and an update, then a BatchWrite with one failed precondition
    batch = client.batch()
    batch.delete(col.document("d1"))
    batch.update(col.document("d2"), {"v": 5})
    batch.commit()
    bulk = BulkWriteBatch(client)
    bulk.update(col.document("d0"), {"v": 7})
    bulk.update(col.document("d1"), {"v": 7})  # d1 is gone: this write fails, is not billed
    bulk.commit()
    # Then only what succeeded is counted
    assert meter.snapshot() == {"reads": 6, "writes": 5, "deletes": 1}


def test_operations_are_attributed_to_the_store_method_that_made_them(client: Any) -> None:
    meter = FirestoreMeter()
    meter_firestore(client, meter)
    col = client.collection(f"m{uuid.uuid4().hex[:8]}")
    with operation("add_task"):
        col.document("a").set({"v": 1})
    col.document("a").get()
    assert meter.by_operation["add_task.writes"] == 1
    assert meter.by_operation["other.reads"] == 1
    meter.reset()
    assert meter.snapshot() == {"reads": 0, "writes": 0, "deletes": 0}
