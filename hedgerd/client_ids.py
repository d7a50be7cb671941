"""Client order ids of the child orders a passive intent places (pure, no dependencies).

A hedge intent's client id is ``<prefix><ledger id>x<intent id>`` (see
:meth:`hedgerd.ledger.InventoryLedger.submit_intent`). A passive intent may place several
orders (one at a time: each reprice cancels the last and places the next); each gets the id
``<intent client id>c<sequence>``, sequence from 1. The id is derived from the durable intent
and the child's journaled sequence number, so a retry or a restart never places a second order
under a number it already used, and the parent is read back from any child id.
"""

from __future__ import annotations

import re

CHILD_SEPARATOR = "c"
MAX_CHILD_SEQUENCE = 9999
_CHILD = re.compile(r"^([A-Za-z0-9_-]+x[0-9]+)c([1-9][0-9]{0,3})$")


def child_client_id(parent: str, sequence: int) -> str:
    """The client id of the ``sequence``-th child order of the intent whose client id is ``parent``."""
    if not 1 <= sequence <= MAX_CHILD_SEQUENCE:
        raise ValueError(f"child sequence {sequence} outside 1..{MAX_CHILD_SEQUENCE}")
    return f"{parent}{CHILD_SEPARATOR}{sequence}"


def split_child_id(client_order_id: str | None) -> tuple[str, int] | None:
    """(parent client id, sequence) of a child order's client id, None for any other id."""
    if not client_order_id:
        return None
    match = _CHILD.match(client_order_id)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def is_child_id(client_order_id: str) -> bool:
    """True for a child order's client id."""
    return split_child_id(client_order_id) is not None


def parent_client_id(client_order_id: str | None) -> str | None:
    """The intent's client id for a child order's id; any other id unchanged (None stays None)."""
    split = split_child_id(client_order_id)
    return client_order_id if split is None else split[0]
