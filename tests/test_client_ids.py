"""The client order id form (hedgerd.ledger.client_ids): what the ledger writes, it and the
foreign-order watch read back, and nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hedgerd.ledger.client_ids import client_order_id, issued_intent_id, new_ledger_id, own_form

prefixes = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8)


@given(prefixes, st.integers(min_value=1, max_value=10**12))
def test_an_issued_id_is_read_back_by_its_ledger_and_matches_its_prefixs_form(prefix: str, intent_id: int) -> None:
    ledger_id = new_ledger_id()
    cid = client_order_id(prefix, ledger_id, intent_id)
    assert issued_intent_id(cid, ledger_id) == intent_id
    assert own_form(prefix).fullmatch(cid)
    other = "0" * 8 if ledger_id != "0" * 8 else "1" * 8
    assert issued_intent_id(cid, other) is None  # another ledger's id


def test_look_alikes_are_not_ours() -> None:
    assert issued_intent_id("hgdabcdef01x", "abcdef01") is None  # no number
    assert issued_intent_id("hgdabcdef01x1٣", "abcdef01") is None  # not ASCII digits
    assert issued_intent_id("anything", "abcdef01") is None
    assert own_form("hgd").fullmatch("hgd2abcdef01x1") is None  # a prefix that starts with ours
    assert own_form("hgd").fullmatch("hgdabcdef0x1") is None  # a ledger id of the wrong length
