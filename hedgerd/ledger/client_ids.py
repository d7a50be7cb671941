"""The client order id form of hedge orders, in one place: ``<prefix><ledger id>x<intent id>``.

The ledger id is 4 random bytes in hex, fixed at a ledger's creation; the intent id is the
intent's number in that ledger. The ledger writes ids of this form (:func:`client_order_id`),
recognises its own (:func:`issued_intent_id`), and :mod:`hedgerd.foreign` recognises any
ledger's with our prefix (:func:`own_form`).
"""

from __future__ import annotations

import re
import secrets

LEDGER_ID_FORM = "[0-9a-f]{8}"


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
