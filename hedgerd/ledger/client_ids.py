"""The client order id form of hedge orders, in one place: ``<prefix><ledger id>x<intent id>``.

The ledger id is 4 random bytes in hex, fixed at a ledger's creation; the intent id is the
intent's number in that ledger. The ledger writes ids of this form (:func:`client_order_id`),
recognises its own (:func:`issued_intent_id`), and :mod:`hedgerd.foreign` recognises any
ledger's with our prefix (:func:`own_form`).

A passive intent may place several child orders (one at a time: each reprice cancels the last
and places the next); each gets ``<intent client id>c<sequence>``, sequence from 1
(:func:`child_client_id`). The id is derived from the durable intent and the child's journaled
sequence number, so a retry or a restart never places a second order under a number it already
used, and the parent is read back from any child id (:func:`parent_client_id`): the ledger books
a child's fills as the intent's and the foreign-order detector counts a child as the intent's.
"""

from __future__ import annotations

import re
import secrets

LEDGER_ID_FORM = "[0-9a-f]{8}"
CHILD_SEPARATOR = "c"
MAX_CHILD_SEQUENCE = 9999
# The intent id is digits only, so "c" after it can only start a child's sequence (the ledger
# id's hex may hold a "c", but it comes before the "x").
_CHILD = re.compile(r"^([A-Za-z0-9_-]+x[0-9]+)" + CHILD_SEPARATOR + r"([1-9][0-9]{0,3})$")


def new_ledger_id() -> str:
    """A new ledger's id (matches :data:`LEDGER_ID_FORM`)."""
    return secrets.token_hex(4)


def client_order_id(prefix: str, ledger_id: str, intent_id: int) -> str:
    """The client order id of intent ``intent_id`` of the ledger ``ledger_id``."""
    return f"{prefix}{ledger_id}x{intent_id}"


def issued_intent_id(client_order_id: str, ledger_id: str) -> int | None:
    """The intent id inside a client order id this ledger issued, or None for any other id.
    Callers match the row's ``client_order_id`` too, so a look-alike (another prefix, leading
    zeros) finds nothing."""
    head, sep, digits = client_order_id.rpartition("x")
    if not sep or not digits.isascii() or not digits.isdigit() or not head.endswith(ledger_id):
        return None
    return int(digits)


def own_form(prefix: str) -> re.Pattern[str]:
    """The client order ids a ledger using ``prefix`` issues, whatever its ledger id.

    The ledger id has a fixed length, so a deployment whose prefix merely starts with ours
    (``hgd2`` next to ``hgd``) issues ids that do not match ours.
    """
    return re.compile(re.escape(prefix) + LEDGER_ID_FORM + r"x[0-9]+")


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
