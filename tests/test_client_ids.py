"""The client order id form (hedgerd.ledger.client_ids): what the ledger writes, it and the
foreign-order watch read back, and nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hedgerd.foreign import Origin, classify
from hedgerd.ledger.client_ids import (
    child_client_id,
    client_order_id,
    issued_intent_id,
    new_ledger_id,
    own_form,
    parent_client_id,
    split_child_id,
)

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


@given(prefixes, st.integers(min_value=1, max_value=10**12), st.integers(min_value=1, max_value=9999))
def test_a_passive_childs_id_reads_back_as_its_intents_and_the_foreign_watch_counts_it_ours(
        prefix: str, intent_id: int, sequence: int) -> None:
    ledger_id = new_ledger_id()
    parent = client_order_id(prefix, ledger_id, intent_id)
    child = child_client_id(parent, sequence)
    assert split_child_id(child) == (parent, sequence)
    assert parent_client_id(child) == parent and parent_client_id(parent) == parent
    assert issued_intent_id(child, ledger_id) is None  # never mistaken for an intent of its own
    issued = {parent}
    assert classify(child, own_form(prefix), issued.__contains__) is Origin.OWN
    # the same form under an intent this ledger never issued: another hedger's order
    assert classify(child, own_form(prefix), set().__contains__) is Origin.FOREIGN


def test_only_a_sequence_after_an_intent_id_makes_a_child() -> None:
    assert split_child_id("hgdabcdefc1x12") is None  # a "c" in the ledger id's hex
    assert split_child_id("hgdabcdef01x12c0") is None  # sequences start at 1
    assert split_child_id("hgdabcdef01x12c10000") is None  # at most 4 digits
    assert split_child_id("web_9f2c1") is None
    assert parent_client_id(None) is None
