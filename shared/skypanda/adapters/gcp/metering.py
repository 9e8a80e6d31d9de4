"""Count what Google bills: Firestore document reads, writes and deletes, as the client sends
and receives them.

`meter_firestore(client)` wraps the client's low-level API object (the one every read, query
and commit goes through) and counts per Firestore's billing rules: one read per document
returned by a get or a query, at least one read per query even when it returns nothing, one
read per up to 1,000 index entries matched by an aggregation (what its count says: a sum
beside it is no count of entries), one write per write in a commit
(and one delete per delete). Wrapping the client rather than each store method means nothing
the store does escapes the count, including retries and lost compare-and-sets.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_operation = threading.local()


@contextmanager
def operation(name: str) -> Iterator[None]:
    """Attribute the operations inside to `name` (a store method) in the meter's breakdown."""
    previous = getattr(_operation, "name", None)
    _operation.name = name
    try:
        yield
    finally:
        _operation.name = previous


class FirestoreMeter:
    """Thread-safe counters of billed Firestore operations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.by_operation: Counter[str] = Counter()

    def add(self, kind: str, n: int = 1) -> None:
        op = getattr(_operation, "name", None) or "other"
        with self._lock:
            self.counts[kind] += n
            self.by_operation[f"{op}.{kind}"] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: self.counts[k] for k in ("reads", "writes", "deletes")}

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.by_operation.clear()


def _writes(request: Any) -> list[Any]:
    writes = request.get("writes", []) if isinstance(request, dict) else request.writes
    return list(writes or [])


def _is_delete(write: Any) -> bool:
    return bool(write.get("delete") if isinstance(write, dict) else write.delete)


class _MeteredApi:
    """A stand-in for the GAPIC Firestore client that counts, then delegates."""

    def __init__(self, api: Any, meter: FirestoreMeter) -> None:
        self._api = api
        self._meter = meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def commit(self, request: Any = None, **kwargs: Any) -> Any:
        response = self._api.commit(request=request, **kwargs)
        writes = _writes(request)
        deletes = sum(_is_delete(w) for w in writes)
        self._meter.add("writes", len(writes) - deletes)
        self._meter.add("deletes", deletes)
        return response

    def batch_write(self, request: Any = None, **kwargs: Any) -> Any:
        """Writes applied one by one: only those that succeeded are billed."""
        response = self._api.batch_write(request=request, **kwargs)
        self._meter.add("writes", sum(1 for status in response.status if status.code == 0))
        return response

    def batch_get_documents(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for response in self._api.batch_get_documents(*args, **kwargs):
            if response.found and response.found.name:
                self._meter.add("reads")
            yield response

    def run_query(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        returned = 0
        try:
            for response in self._api.run_query(*args, **kwargs):
                if response.document and response.document.name:
                    returned += 1
                yield response
        finally:
            self._meter.add("reads", max(1, returned))

    def run_aggregation_query(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        entries = 0
        sums = _summed_aliases(kwargs.get("request"))
        try:
            for response in self._api.run_aggregation_query(*args, **kwargs):
                for alias, value in response.result.aggregate_fields.items():
                    if alias not in sums:
                        entries = max(entries, int(value.integer_value or 0))
                yield response
        finally:
            self._meter.add("reads", max(1, -(-entries // 1000)))


def _summed_aliases(request: Any) -> set[str]:
    """The aliases of an aggregation's sums and averages: values that count no index entry.
    (An unnamed one gets its alias from the server: counted as a count, an upper bound.)"""
    query = request.get("structured_aggregation_query") if isinstance(request, dict) else None
    if query is None:
        return set()
    return {a.alias for a in query.aggregations if a.alias and ("sum" in a or "avg" in a)}


def meter_firestore(client: Any, meter: FirestoreMeter | None = None) -> FirestoreMeter:
    """Count the billed operations of everything done through `client` from now on."""
    meter = meter or FirestoreMeter()
    client._firestore_api_internal = _MeteredApi(client._firestore_api, meter)
    return meter
