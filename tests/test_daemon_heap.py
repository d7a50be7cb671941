"""The daemon freezes what startup built out of the cyclic GC (full collections stall the loop)."""

from __future__ import annotations

import gc
import weakref

from hedgerd.daemon import freeze_startup_heap


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def tracked_ids() -> set[int]:
    return {id(obj) for obj in gc.get_objects()}  # the GC's generations; frozen objects are not in them


def test_startup_objects_leave_the_gc_and_later_ones_stay_in_it() -> None:
    gc.unfreeze()
    before = Node()
    try:
        frozen = freeze_startup_heap()
        after = Node()
        assert frozen == gc.get_freeze_count() and frozen > 1000  # the interpreter's own heap at least
        ids = tracked_ids()
        assert id(before) not in ids and id(before.__dict__) not in ids
        assert id(after) in ids
    finally:
        gc.unfreeze()
    assert id(before) in tracked_ids()


def test_freezing_collects_garbage_cycles_first() -> None:
    gc.unfreeze()
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    ref = weakref.ref(a)
    del a, b  # unreachable, but a cycle: only the collector frees it; frozen, it would never be
    try:
        freeze_startup_heap()
        assert ref() is None
    finally:
        gc.unfreeze()
