"""hedgerd.ledger.accounting: the one position-accounting function, on its own."""

from __future__ import annotations

import decimal
import itertools
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from hedgerd.ledger.accounting import ARITHMETIC, Snapshot, TradeTotals, apply_fills, trade_moves
from hedgerd.models import Fill, Side

D = Decimal


def fill(trade_id: str, symbol: str = "BTC/USDT", side: Side = Side.BUY, amount: str = "1", price: str = "100",
         fee: str = "0", fee_currency: str | None = None, venue: str = "spot", ts: float = 1.0,
         client_order_id: str | None = None) -> Fill:
    return Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=side, amount=D(amount), price=D(price),
                fee=D(fee), fee_currency=fee_currency, ts=ts, client_order_id=client_order_id)


def test_a_spot_fill_moves_base_and_quote_and_its_fee_currency() -> None:
    applied = apply_fills([fill("t1", amount="2", price="100", fee="0.5", fee_currency="USDT",
                                client_order_id="hgdx1")], {}, {}, {})
    assert applied.positions == {("spot", "BTC"): D(2), ("spot", "USDT"): D("-200.5")}
    assert applied.trades == {("spot", "BTC/USDT"): TradeTotals(1, D(2), D(200), D("0.5"))}
    venue = applied.venues["spot"]
    assert (venue.fills, venue.fees, venue.last_fill_ts) == (1, D("0.5"), 1.0)
    assert applied.order_fills == {"hgdx1": D(2)}
    assert applied.hedge_fees == {"spot": D("0.5")}
    assert applied.fills_by_symbol == {("spot", "BTC/USDT"): 1}


def test_a_derivative_fill_moves_its_symbol_and_a_base_fee_leaves_the_traded_amount() -> None:
    applied = apply_fills([fill("t1", symbol="BTC/USDT:USDT", side=Side.SELL, amount="3", fee="0.01",
                                fee_currency="BTC", venue="perp")], {("perp", "BTC/USDT:USDT"): D(1)}, {}, {})
    assert applied.positions == {("perp", "BTC/USDT:USDT"): D(-2), ("perp", "BTC"): D("-0.01")}
    assert applied.trades[("perp", "BTC/USDT:USDT")] == TradeTotals(1, D("-3.01"), D(-300), D(0))


def test_the_inputs_are_left_unchanged() -> None:
    snapshot = Snapshot()
    first = apply_fills([fill("t1")], snapshot.positions, snapshot.venues, snapshot.trades)
    snapshot.positions.update(first.positions)
    snapshot.venues.update(first.venues)
    before = (dict(snapshot.positions), snapshot.venues["spot"].fills)
    apply_fills([fill("t2")], snapshot.positions, snapshot.venues, snapshot.trades)
    assert (dict(snapshot.positions), snapshot.venues["spot"].fills) == before


def test_trade_moves_are_the_positions_less_the_fee() -> None:
    f = fill("t1", side=Side.SELL, amount="0.5", price="200", fee="1", fee_currency="USDT")
    assert trade_moves(f) == {("spot", "BTC"): D("-0.5"), ("spot", "USDT"): D(100)}


_fills = st.lists(st.builds(
    fill,
    trade_id=st.just("t"),
    symbol=st.sampled_from(["BTC/USDT", "ETH/USDT", "BTC/USDT:USDT"]),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    amount=st.decimals(min_value=D("0.001"), max_value=D(1000), places=3).map(str),
    price=st.decimals(min_value=D("0.01"), max_value=D(100000), places=2).map(str),
    fee=st.decimals(min_value=D(0), max_value=D(10), places=4).map(str),
    fee_currency=st.sampled_from([None, "USDT", "BTC", "BNB"]),
    venue=st.sampled_from(["spot", "perp"]),
    ts=st.floats(min_value=0, max_value=1e9),
    client_order_id=st.sampled_from([None, "hgdx1", "hgdx2"]),
), max_size=40)


@given(_fills, st.lists(st.integers(min_value=0, max_value=40), max_size=6))
def test_any_batch_split_gives_the_same_aggregates(fills: list[Fill], cuts: list[int]) -> None:
    with decimal.localcontext(ARITHMETIC):
        whole = apply_fills(fills, {}, {}, {})
        snapshot = Snapshot()
        bounds = [0, *sorted(min(c, len(fills)) for c in cuts), len(fills)]
        for start, end in itertools.pairwise(bounds):
            applied = apply_fills(fills[start:end], snapshot.positions, snapshot.venues, snapshot.trades)
            snapshot.positions.update(applied.positions)
            snapshot.venues.update(applied.venues)
            snapshot.trades.update(applied.trades)
            for cid, amount in applied.order_fills.items():
                snapshot.order_fills[cid] = snapshot.order_fills.get(cid, D(0)) + amount
    assert snapshot.positions == whole.positions
    assert snapshot.trades == whole.trades
    assert snapshot.order_fills == whole.order_fills
    assert {v: (t.fills, t.fees, t.last_fill_ts) for v, t in snapshot.venues.items()} == \
        {v: (t.fills, t.fees, t.last_fill_ts) for v, t in whole.venues.items()}
