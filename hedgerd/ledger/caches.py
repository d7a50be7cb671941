"""The ledger's bounded in-memory caches: per-order entries kept for the orders in flight and
those settled lately; a miss reads the database."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: Per-order entries (filled amount, state) kept in memory; a miss reads the database. The orders
#: asked about are the ones in flight (a handful per underlying) and those settled lately, whose
#: repeated reports and fills still arrive; a larger cache only held memory for hours of orders.
CACHE_SIZE = 256


class LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry."""

    def __init__(self, capacity: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._capacity:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
