"""Hedged-book PnL: the pure arithmetic in hedgerd.risk.pnl and the ledger's trade totals behind it."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from hedgerd.ledger import InventoryLedger
from hedgerd.ledger.accounting import TradeTotals
from hedgerd.models import Fill, Side
from hedgerd.risk import hedge_book_pnl, trade_pnl, untraded_quantity
from hedgerd.risk.pnl import BookPnl

D = Decimal
SPOT, PERP = "BTC/USDT", "BTC/USDT:USDT"


def fill(trade_id: str, *, venue: str = "spot", symbol: str = SPOT, side: Side = Side.BUY, amount: str = "1",
         price: str = "100", fee: str = "0", fee_currency: str | None = None) -> Fill:
    return Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=side, amount=D(amount), price=D(price),
                fee=D(fee), fee_currency=fee_currency, ts=1.0)


def test_trade_pnl_marks_the_net_amount_and_subtracts_notional_and_fees() -> None:
    # bought 2 at 100, sold 1 at 103, paid 0.5 in fees: 1 still held, marked at 101
    totals = TradeTotals(fills=2, amount=D(1), notional=D(2 * 100 - 103), fees=D("0.5"))
    assert trade_pnl(totals, D(101)) == D(101) - D(97) - D("0.5") == D("3.5")
    # flat: the mark does not matter any more, what is left is realized
    flat = TradeTotals(fills=2, amount=D(0), notional=D(100 - 103), fees=D("0.5"))
    assert trade_pnl(flat, D(1)) == trade_pnl(flat, D(10_000)) == D("2.5")


def test_hedge_book_pnl_sums_the_inventory_symbols_and_the_hedge_instrument() -> None:
    trades = {
        ("spot", SPOT): TradeTotals(1, D(1), D(99), D(0)),            # desk bought 1 at 99 (the bid)
        ("perp", PERP): TradeTotals(1, D(-1), D(-98), D("0.049")),   # hedge sold 1 at 98, fee 0.049
        ("spot", "BTC/EUR"): TradeTotals(1, D(1), D(50), D(0)),      # another quote: not convertible
        ("other", SPOT): TradeTotals(1, D(1), D(1), D(0)),           # not an inventory source
        ("spot", "ETH/USDT"): TradeTotals(1, D(1), D(1), D(0)),      # another base
    }
    pnl = hedge_book_pnl(trades, inventory=[("spot", "BTC")], hedge=("perp", PERP), mid=D(100))
    # spot: 1 x 100 - 99 = 1 ; perp: -1 x 100 + 98 - 0.049 = -2.049
    assert pnl == D("-1.049")
    # hedged: the mid cancels out
    assert hedge_book_pnl(trades, inventory=[("spot", "BTC")], hedge=("perp", PERP), mid=D(150)) == pnl
    # a derivative inventory source is keyed by its symbol
    trades[("inv-perp", "BTC/USDT:USDT")] = TradeTotals(1, D(2), D(190), D(0))
    with_deriv = hedge_book_pnl(trades, inventory=[("spot", "BTC"), ("inv-perp", PERP)], hedge=("perp", PERP),
                                mid=D(100))
    assert with_deriv == pnl + D(2 * 100 - 190)
    assert hedge_book_pnl({}, inventory=[("spot", "BTC")], hedge=("perp", PERP), mid=D(100)) == 0


def test_an_adopted_balance_is_valued_from_its_mark_so_its_hedge_is_not_an_open_position() -> None:
    # 1 BTC adopted at startup (no trade), 0.5 bought from a client at 100, 1.5 hedged at 101
    positions = {("spot", "BTC"): D("1.5"), ("spot", "USDT"): D(-50), ("perp", PERP): D("-1.5")}
    trades = {("spot", SPOT): TradeTotals(1, D("0.5"), D(50), D(0)),
              ("perp", PERP): TradeTotals(1, D("-1.5"), D("-151.5"), D(0))}
    untraded = untraded_quantity(positions, trades, inventory=[("spot", "BTC")], hedge=("perp", PERP))
    assert untraded == 1
    pnls = {hedge_book_pnl(trades, inventory=[("spot", "BTC")], hedge=("perp", PERP), mid=mid,
                           untraded=(untraded, D(100))) for mid in (D(90), D(100), D(130))}
    # 1 x (m - 100) + (0.5 m - 50) + (-1.5 m + 151.5) = 1.5 whatever the mid
    assert pnls == {D("1.5")}
    # without the adopted balance the hedge looks like a naked short
    assert hedge_book_pnl(trades, inventory=[("spot", "BTC")], hedge=("perp", PERP), mid=D(130)) == D("-28.5")


def test_book_pnl_values_untraded_balances_from_the_first_mark_and_picks_up_new_symbols() -> None:
    book = [("spot", "BTC")]
    hedge = ("perp", PERP)
    positions = {("spot", "BTC"): D(2), ("perp", PERP): D(-1)}  # 2 BTC adopted, 1 of them hedged
    trades = {("perp", PERP): TradeTotals(1, D(-1), D(-98), D(0))}
    asked: list[int] = []

    def read_positions() -> dict[tuple[str, str], Decimal]:
        asked.append(1)
        return positions

    pnl = BookPnl()
    untraded = (untraded_quantity(positions, trades, inventory=book, hedge=hedge), D(100))
    assert untraded[0] == D(2)
    first = pnl.mark("BTC", trades, read_positions, inventory=book, hedge=hedge, mid=D(100))
    assert first == hedge_book_pnl(trades, inventory=book, hedge=hedge, mid=D(100)) == D(-2)
    # the adopted 2 BTC are valued from the first mark (100) on
    assert pnl.mark("BTC", trades, read_positions, inventory=book, hedge=hedge, mid=D(105)) == hedge_book_pnl(
        trades, inventory=book, hedge=hedge, mid=D(105), untraded=untraded) == D(-7) + D(10)
    # a book symbol traded for the first time joins the book; the untraded quantity stays as first seen
    trades[("spot", SPOT)] = TradeTotals(1, D(1), D(104), D(0))
    expected = hedge_book_pnl(trades, inventory=book, hedge=hedge, mid=D(105), untraded=untraded)
    assert expected == D(3) + D(1)
    assert pnl.mark("BTC", trades, read_positions, inventory=book, hedge=hedge, mid=D(105)) == expected
    assert pnl.by_underlying == {"BTC": expected}
    assert asked == [1]  # the positions are read for the first mark only


async def test_ledger_tracks_trade_totals_and_rebuilds_them(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    fills = [
        fill("s1", amount="2", price="100", fee="0.01", fee_currency="BTC"),       # base fee: holds 1.99
        fill("s2", side=Side.SELL, amount="0.5", price="110", fee="0.2", fee_currency="USDT"),
        fill("s3", amount="1", price="90", fee="5", fee_currency="BNB"),           # not valued
        fill("p1", venue="perp", symbol=PERP, side=Side.SELL, amount="2.5", price="101", fee="0.1",
             fee_currency="USDT"),
        fill("p2", venue="perp", symbol=PERP, amount="1", price="99", fee="0.05"),  # no currency: quote
    ]
    expected = {
        ("spot", SPOT): TradeTotals(3, D("2.49"), D(200 - 55 + 90), D("0.2")),
        ("perp", PERP): TradeTotals(2, D("-1.5"), D(-252.5 + 99), D("0.15")),
    }
    ledger = InventoryLedger(path)
    await ledger.open()
    for f in fills[:2]:
        await ledger.record_fill(f)
    for f in fills[2:]:  # the rest in one group commit
        ledger.submit_fill(f)
    await ledger.record_fill(fills[0])  # a duplicate changes nothing
    assert ledger.trade_totals() == expected
    await ledger.verify()
    await ledger.close()

    ledger = InventoryLedger(path)
    await ledger.open()
    assert not ledger.rebuilt_from_journal
    assert ledger.trade_totals() == expected
    await ledger.close()

    with sqlite3.connect(path) as conn:  # as a ledger written before trade totals existed
        conn.execute("DELETE FROM trade_totals")
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        assert ledger.rebuilt_from_journal
        assert ledger.trade_totals() == expected
        await ledger.verify()
        pnl = hedge_book_pnl(ledger.trade_totals(), inventory=[("spot", "BTC")], hedge=("perp", PERP), mid=D(100))
        assert pnl == D("2.49") * 100 - 235 - D("0.2") + D("-1.5") * 100 + D("153.5") - D("0.15")
    finally:
        await ledger.close()
