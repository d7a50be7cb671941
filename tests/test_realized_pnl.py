"""Realized PnL by average cost and FIFO (hedgerd.risk.realized), the worked example of
docs/pnl.md, and the daemon's PnlBook that feeds /status and the metrics."""

from __future__ import annotations

import decimal
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerd.config import Settings
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.ledger import InventoryLedger
from hedgerd.ledger.accounting import ARITHMETIC
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, Side
from hedgerd.pnl_book import PnlBook
from hedgerd.risk.realized import AverageCost, FifoLots, Lot, PnlMethod, PositionPnl, average_fill, realized_pnl

D = Decimal
PERP = "BTC/USDT:USDT"
INVERSE = "BTC/USD:BTC"

# docs/pnl.md's worked example: a short hedge opened at 60 000 and 62 000, closed at 61 000 and 59 000
EXAMPLE = [(D("-0.5"), D(60_000)), (D("-0.5"), D(62_000)), (D("0.5"), D(61_000)), (D("0.5"), D(59_000))]


def test_worked_example_average_cost() -> None:
    state = AverageCost()
    steps = []
    for signed, price in EXAMPLE:
        state = average_fill(state, signed, price)
        steps.append((state.position, state.price, state.realized))
    assert steps == [(D("-0.5"), D(60_000), 0), (D(-1), D(61_000), 0), (D("-0.5"), D(61_000), 0),
                     (0, None, D(1_000))]


def test_worked_example_fifo() -> None:
    lots = FifoLots()
    realized = [lots.fill(signed, price) for signed, price in EXAMPLE[:3]]
    assert realized == [0, 0, D(-500)]
    assert list(lots.lots) == [Lot(D("-0.5"), D(62_000))]
    assert lots.fill(*EXAMPLE[3]) == D(1_500)
    assert lots.realized == D(1_000) and not lots.lots


def test_worked_example_split_after_the_third_fill() -> None:
    # marked at 61 000 after fill 3: average 0 + 0, FIFO -500 + 500; the same total
    pnl = PositionPnl()
    for signed, price in EXAMPLE[:3]:
        pnl.fill(signed, price)
    assert (pnl.realized("average"), pnl.unrealized("average", D(61_000))) == (0, 0)
    assert (pnl.realized("fifo"), pnl.unrealized("fifo", D(61_000))) == (D(-500), D(500))
    assert realized_pnl(EXAMPLE, "average") == realized_pnl(EXAMPLE, "fifo") == D(1_000)


def test_a_fill_through_zero_closes_all_and_opens_the_rest_at_its_price() -> None:
    pnl = PositionPnl()
    pnl.fill(D(1), D(100))
    pnl.fill(D(1), D(110))
    pnl.fill(D(-3), D(120))  # closes 2 (average 105: +30; FIFO +20 +10) and opens -1 at 120
    assert pnl.average == AverageCost(D(-1), D(-120), D(30))
    assert pnl.fifo.realized == D(30) and list(pnl.fifo.lots) == [Lot(D(-1), D(120))]


amounts = st.decimals(min_value=D("-5"), max_value=D("5"), places=3).filter(bool)
prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
fills = st.lists(st.tuples(amounts, prices), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(fills, prices)
def test_both_methods_agree_once_the_position_is_flat(trades: list[tuple[Decimal, Decimal]], close: Decimal) -> None:
    pnl = PositionPnl()
    for signed, price in trades:
        pnl.fill(signed, price)
    position = pnl.average.position
    assert pnl.fifo.position == position
    if position:
        pnl.fill(-position, close)
    with decimal.localcontext(ARITHMETIC):
        cash = -sum((s * p for s, p in trades), D(0)) + position * close
    # average cost rounds a partial close's share of the basis at 60 digits; the rest is exact
    assert abs(pnl.realized("average") - cash) < D("1e-40")
    assert pnl.realized("fifo") == cash
    assert not pnl.fifo.lots and not pnl.average.position and not pnl.average.basis


@settings(max_examples=300, deadline=None)
@given(fills, prices)
def test_realized_plus_unrealized_is_the_same_total_by_either_method(trades: list[tuple[Decimal, Decimal]],
                                                                     mid: Decimal) -> None:
    pnl = PositionPnl()
    for signed, price in trades:
        pnl.fill(signed, price)
    with decimal.localcontext(ARITHMETIC):  # the test's own sums must not round either
        totals = {m: pnl.realized(m) + pnl.unrealized(m, mid) for m in ("average", "fifo")}
        marked = -sum((s * p for s, p in trades), D(0)) + pnl.average.position * mid
    assert abs(totals["average"] - marked) < D("1e-40")
    assert totals["fifo"] == marked


@settings(max_examples=200, deadline=None)
@given(fills)
def test_fifo_keeps_only_the_open_positions_lots(trades: list[tuple[Decimal, Decimal]]) -> None:
    lots = FifoLots()
    since_flat = 0  # fills since the position last crossed or touched zero: an upper bound of open lots
    for signed, price in trades:
        before = lots.position
        lots.fill(signed, price)
        after = lots.position
        since_flat = 0 if not after else (1 if before * after <= 0 else since_flat + 1)
        assert len(lots.lots) <= since_flat
        assert all((lot.amount > 0) == (after > 0) for lot in lots.lots)  # never mixed signs


def test_fifo_memory_follows_the_open_position_not_the_history() -> None:
    # 100 000 fills trading around a 1-unit short: the lots are those of the open position (at
    # most 1 / 0.01 of them once the first lot is consumed), never the history's
    lots = FifoLots()
    lots.fill(D(-1), D(60_000))
    for i in range(50_000):
        price = D(60_000 + i % 97)
        lots.fill(D("-0.01"), price)
        lots.fill(D("0.01"), price + 1)
    assert lots.position == D(-1)
    assert len(lots.lots) == 100


def test_fifo_merges_an_opening_fill_at_the_newest_lots_price() -> None:
    lots = FifoLots()
    for _ in range(1_000):
        lots.fill(D("-0.001"), D(60_000))
    assert list(lots.lots) == [Lot(D("-1.000"), D(60_000))]


def _fill(trade_id: str, side: Side, amount: str, price: str, *, venue: str = "perp",
          symbol: str = PERP) -> Fill:
    return Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=side, amount=D(amount), price=D(price),
                fee=D(0), fee_currency=None, ts=1.0, client_order_id=None)


async def test_pnl_book_replays_the_ledger_then_follows_new_fills_and_the_method(
        ledger_location: Path | str) -> None:
    # ledger_location: on each ledger backend (tests/conftest.py)
    method: list[PnlMethod] = ["average"]
    metrics = Metrics()
    async with InventoryLedger(ledger_location) as ledger:
        for i, (signed, price) in enumerate(EXAMPLE[:3]):
            await ledger.record_fill(_fill(f"t{i}", Side.for_delta(signed), str(abs(signed)), str(price)))
        await ledger.record_fill(_fill("other", Side.BUY, "7", "1", symbol="ETH/USDT:USDT"))  # not the hedge
        book = PnlBook(metrics, ledger.position, lambda: method[0])
        book.track("BTC", "perp", PERP, ledger.symbol_trades("perp", PERP))
        assert book.mark("BTC", "perp", PERP, D(61_000)) == {
            "method": "average", "realized": "0", "unrealized": "0", "open_lots": 1, "cost_price": "61000"}
        method[0] = "fifo"  # a reload: no replay needed, both were kept
        assert book.mark("BTC", "perp", PERP, D(61_000)) == {
            "method": "fifo", "realized": "-500", "unrealized": "500", "open_lots": 1, "cost_price": "62000"}
        assert metrics.hedge_realized_pnl.labels("BTC", "fifo")._value.get() == -500
        assert metrics.hedge_realized_pnl.labels("BTC", "average")._value.get() == 0
        book.on_fills([_fill("t3", Side.BUY, "0.5", "59000")])
        assert book.realized("BTC") == D(1_000)
        assert metrics.hedge_realized_pnl.labels("BTC", "average")._value.get() == 1_000


async def test_pnl_book_opens_a_position_no_trade_accounts_for_at_the_mid(ledger_location: Path | str) -> None:
    async with InventoryLedger(ledger_location) as ledger:
        await ledger.record_adjustment("perp", PERP, D(-2), "adopted", 1.0)
        book = PnlBook(Metrics(), ledger.position, lambda: "fifo")
        book.track("BTC", "perp", PERP, ledger.symbol_trades("perp", PERP))
        assert book.mark("BTC", "perp", PERP, D(50_000))["cost_price"] == "50000"
        book.on_fills([_fill("t0", Side.BUY, "1", "49000")])
        assert book.realized("BTC") == D(1_000)
        assert book.mark("BTC", "perp", PERP, D(49_000))["unrealized"] == "1000"



async def test_pnl_book_counts_a_contract_hedge_in_base_units_and_leaves_an_inverse_one_out(
        ledger_location: Path | str) -> None:
    # a market with an instrument journals contracts: 500 of 0.001 BTC are 0.5 BTC
    linear = Instrument(symbol=PERP, kind=InstrumentKind.LINEAR, underlying="BTC", quote="USDT", settle="USDT",
                        contract_size=D("0.001"))
    inverse = Instrument(symbol=INVERSE, kind=InstrumentKind.INVERSE, underlying="BTC", quote="USD", settle="BTC",
                         contract_size=D(10))
    async with InventoryLedger(ledger_location) as ledger:
        await ledger.record_fill(_fill("t0", Side.SELL, "500", "60000"))
        await ledger.record_fill(_fill("i0", Side.SELL, "30", "60000", venue="inv", symbol=INVERSE))
        book = PnlBook(Metrics(), ledger.position, lambda: "average")
        book.track("BTC", "perp", PERP, ledger.symbol_trades("perp", PERP), linear)
        assert book.mark("BTC", "perp", PERP, D(61_000)) == {
            "method": "average", "realized": "0", "unrealized": "-500", "open_lots": 1, "cost_price": "60000"}
        book.on_fills([_fill("t1", Side.BUY, "200", "59000")])
        assert book.realized("BTC") == D(200)  # 0.2 BTC closed 1 000 below its cost
        coin = PnlBook(Metrics(), ledger.position, lambda: "average")
        coin.track("BTC", "inv", INVERSE, ledger.symbol_trades("inv", INVERSE), inverse)
        coin.on_fills([_fill("i1", Side.BUY, "30", "59000", venue="inv", symbol=INVERSE)])
        assert "BTC" not in coin.by_underlying and coin.realized("BTC") == 0  # in coin: not valued yet

def test_pnl_method_is_validated_and_reloads_live() -> None:
    from hedgerd.config.reload import reloadable_fields

    assert Settings(risk={"pnl_method": "fifo"}).risk.pnl_method == "fifo"  # type: ignore[arg-type]
    try:
        Settings(risk={"pnl_method": "lifo"})  # type: ignore[arg-type]
    except ValueError as exc:
        assert "pnl_method" in str(exc)
    else:
        raise AssertionError("lifo accepted")
    assert "risk.pnl_method" in reloadable_fields()
