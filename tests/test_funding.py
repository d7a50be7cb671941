"""Funding payments: journaled once (by venue and payment id), backfilled after downtime, charged
by the paper venues on their rate model, counted in the hedging cost and the hedged book's PnL,
and the cost book rebuilt from the ledger after a restart."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from pathlib import Path

import pytest

from hedgerd.config import SimSettings
from hedgerd.connectors.paper import SimPerpVenue
from hedgerd.cost_book import CostBook
from hedgerd.funding import FundingPoller
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, FundingPayment, PriceUpdate, Side
from hedgerd.risk.cost import Conversion, FeeStatus, HedgeCost, add_funding, value_funding
from hedgerd.sim.funding import FundingSchedule, binance_rate, funding_times
from hedgerd.sim.market import SimMarketData
from tests.fakes import FakeClock
from tests.test_engine import PERP, eventually, make_settings, running_engine
from tests.test_ledger import run_sql

D = Decimal
H8 = 8 * 3600.0
T0 = 1_700_006_400.0  # a funding time (a multiple of 8 h)
INVERSE = "BTC/USD:BTC"


def pay(ts: float, amount: str, *, venue: str = "perp", payment_id: str | None = None,
        symbol: str = PERP, currency: str = "USDT") -> FundingPayment:
    return FundingPayment(venue=venue, symbol=symbol, payment_id=FundingPayment.key(symbol, ts, payment_id),
                          amount=D(amount), currency=currency, ts=ts)


def no_conversion(currency: str, quote: str) -> Conversion | None:
    return None


# ------------------------------------------------------------------ the journal
# The tests taking ``ledger_location`` run on each ledger backend (SQLite and PostgreSQL, see
# tests/conftest.py), as tests/test_ledger.py does.


async def test_a_payment_is_journaled_once_however_often_it_is_fetched(ledger_location: Path | str) -> None:
    path = ledger_location
    first, second = pay(T0, "-1.5"), pay(T0 + H8, "0.25", payment_id="8812")
    async with InventoryLedger(path) as ledger:
        assert await ledger.costs.record_funding([first, first]) == [first]  # twice in one fetch
        assert await ledger.costs.record_funding([first, second]) == [second]  # an overlapping fetch
        assert await ledger.costs.record_funding([second]) == []
        assert ledger.costs.last_funding_ts("perp") == T0 + H8 and ledger.costs.last_funding_ts("other") is None
        # without a venue id the key is the symbol and the funding time, with one it is the id
        assert [p.payment_id for p in ledger.costs.funding_payments()] == [f"{PERP}@{int(T0 * 1000)}", "8812"]
    async with InventoryLedger(path) as ledger:  # durable, and still unique after a restart
        assert ledger.costs.funding_payments() == [first, second]
        assert await ledger.costs.record_funding([first, second]) == []
        assert await ledger.costs.record_funding([pay(T0, "-1.5", venue="other")]) != []  # unique per venue


async def test_a_version_3_ledger_gets_the_funding_table(ledger_location: Path | str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    path = ledger_location
    async with InventoryLedger(path):
        pass
    run_sql(path, "DROP TABLE funding", "DROP TABLE fee_conversions",  # as version 3 wrote it
            "UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    async with InventoryLedger(path) as ledger:
        assert "migrated from version 3 to 4" in caplog.text
        assert await ledger.costs.record_funding([pay(T0, "-1")]) == [pay(T0, "-1")]
        ledger.costs.record_fee_conversion("perp", "t1", "BNB", D("600"))
    assert run_sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]
    assert run_sql(path, "SELECT venue, trade_id, currency, price FROM fee_conversions") == [
        ("perp", "t1", "BNB", "600")]


async def test_a_non_finite_funding_amount_is_refused(ledger_location: Path | str) -> None:
    async with InventoryLedger(ledger_location) as ledger:
        with pytest.raises(ValueError, match="funding amount must be finite"):
            await ledger.costs.record_funding([pay(T0, "NaN")])
        assert ledger.costs.funding_payments() == []


# ------------------------------------------------------------------ the arithmetic


def test_funding_paid_is_a_cost_and_funding_received_a_negative_one() -> None:
    cost = HedgeCost()
    add_funding(cost, pay(T0, "-3.2"), no_conversion, max_age=60)
    assert cost.funding == D("3.2") and cost.total == D("3.2")
    add_funding(cost, pay(T0 + H8, "1.2"), no_conversion, max_age=60)
    assert cost.funding == D("2.0") and cost.as_status()["funding"] == "2.0"


def test_funding_in_the_coin_of_an_inverse_perpetual_is_valued_at_a_fresh_mid_or_flagged() -> None:
    coin = pay(T0, "-0.0001", symbol="BTC/USD:BTC", currency="BTC")

    def mid_at(ts: float) -> object:
        return lambda currency, quote: Conversion(D(60000), ts) if (currency, quote) == ("BTC", "USD") else None

    assert value_funding(coin, mid_at(T0 - 10), max_age=60).value == D("6.0000")  # type: ignore[arg-type]
    stale = value_funding(coin, mid_at(T0 - 120), max_age=60)  # type: ignore[arg-type]
    assert (stale.value, stale.status) == (None, FeeStatus.STALE)
    cost = HedgeCost()
    add_funding(cost, coin, no_conversion, max_age=60)
    assert (cost.funding, cost.unvalued_funding) == (0, 1)  # never counted as zero silently


def test_the_readme_funding_example() -> None:
    # short 2 BTC on BTC/USDT:USDT; rate +0.01 % at a mark of 60 000: the short receives 12 USDT,
    # then -0.03 % at 61 000: it pays 36.6 USDT
    received = -(D(-2) * D(60000) * D("0.0001"))
    paid = -(D(-2) * D(61000) * D("-0.0003"))
    assert (received, paid) == (D("12.0000"), D("-36.6000"))
    cost = HedgeCost()
    for ts, amount in ((T0, received), (T0 + H8, paid)):
        add_funding(cost, pay(ts, str(amount)), no_conversion, max_age=60)
    assert cost.funding == D("24.6")


# ------------------------------------------------------------------ the poller


class ListedFunding:
    """A venue that lists every payment it was given, from ``since`` on (as Binance's income does)."""

    name = "perp"

    def __init__(self) -> None:
        self.listed: list[FundingPayment] = []
        self.asked: list[float | None] = []

    async def fetch_funding_since(self, since: float | None) -> list[FundingPayment]:
        self.asked.append(since)
        return [p for p in self.listed if since is None or p.ts >= since]


async def _book_and_poller(ledger: InventoryLedger, venue: ListedFunding) -> tuple[CostBook, FundingPoller]:
    book = CostBook(Metrics(), {})
    book.track("BTC", "perp", PERP)
    await book.rebuild(ledger)
    poller = FundingPoller({"perp": venue}, [("perp", PERP)], ledger, book, FakeClock(),  # type: ignore[dict-item]
                           book.metrics, interval=lambda: 300.0, overlap=lambda: H8)
    return book, poller


async def test_payments_made_while_the_daemon_was_down_are_backfilled_once(ledger_location: Path | str) -> None:
    path = ledger_location
    venue = ListedFunding()
    # one from before the ledger held anything on the venue: not its hedge's, never booked
    venue.listed = [pay(T0 - 10 * H8, "-9"), pay(T0, "-2"), pay(T0 + H8, "-3")]
    async with InventoryLedger(path) as ledger:
        book, poller = await _book_and_poller(ledger, venue)
        assert await poller.poll_once() == 2
        assert await poller.poll_once() == 0  # the overlap fetches the last one again: ignored
        # first from now (nothing journaled on the venue), then from the last payment less the overlap
        assert venue.asked == [FakeClock().time(), T0]
        assert book.by_underlying["BTC"].funding == D(5)
    # down for a day: three payments happen meanwhile
    venue.listed += [pay(T0 + k * H8, "-1") for k in (2, 3, 4)]
    async with InventoryLedger(path) as ledger:
        book, poller = await _book_and_poller(ledger, venue)
        assert book.by_underlying["BTC"].funding == D(5)  # rebuilt from the journal at start
        assert await poller.poll_once() == 3
        assert venue.asked[-1] == T0  # resumed from the last journaled payment, less the overlap
        assert [p.ts for p in ledger.costs.funding_payments()] == [T0 + k * H8 for k in range(5)]  # each once
        assert book.by_underlying["BTC"].funding == D(8)
        assert book.funding_received["BTC"] == D(-8)


async def test_a_payment_on_another_symbol_is_journaled_but_not_the_hedges_cost(
        ledger_location: Path | str) -> None:
    venue = ListedFunding()
    venue.listed = [pay(T0, "-2", symbol="ETH/USDT:USDT")]
    async with InventoryLedger(ledger_location) as ledger:
        book, poller = await _book_and_poller(ledger, venue)
        assert await poller.poll_once() == 1
        assert book.by_underlying["BTC"].funding == 0


# ------------------------------------------------------------------ the paper venue's funding


def test_binance_rate_is_the_interest_rate_within_the_clamp() -> None:
    assert binance_rate(0.0) == pytest.approx(0.0001)
    assert binance_rate(0.0003) == pytest.approx(0.0001)  # |I - P| <= 0.05 %: F = I
    assert binance_rate(-0.0002) == pytest.approx(0.0001)
    assert binance_rate(0.002) == pytest.approx(0.0015)  # P + clamp(I - P) = 0.2 % - 0.05 %
    assert funding_times(T0 - 1, T0 + 2 * H8, H8) == [T0, T0 + H8, T0 + 2 * H8]
    assert funding_times(T0, T0 + H8 - 1, H8) == []


def test_a_funding_schedule_is_reproducible_and_averages_the_premium_over_the_interval() -> None:
    def rates(seed: int) -> list[tuple[float, float]]:
        schedule = FundingSchedule(random.Random(seed), start=T0 - 100)
        return schedule.due(T0 + H8 - 1) + schedule.due(T0 + 3 * H8)

    first = rates(7)
    assert first == rates(7) != rates(8)
    assert [t for t, _ in first] == [T0, T0 + H8, T0 + 2 * H8, T0 + 3 * H8]
    quiet = FundingSchedule(random.Random(1), start=T0, std=0.0, interest=0.0002)
    assert quiet.due(T0 + 2 * H8) == [(T0 + H8, pytest.approx(0.0002)), (T0 + 2 * H8, pytest.approx(0.0002))]


async def test_the_paper_perp_charges_funding_on_the_position_held_at_each_funding_time() -> None:
    clock = FakeClock(start=0.0, wall_offset=T0 - 60)  # a minute before a funding time
    settings = SimSettings(seed=3, symbol=PERP, volatility=0.0, latency_ms=0.0, funding_premium_std=0.0,
                           funding_interest_rate=D("0.0001"))
    venue = SimPerpVenue("perp", settings, SimMarketData("BTC", settings, clock), clock)
    venue.seed_position(PERP, D("-2"))
    mid = venue.market.mid()
    clock.advance(120)
    venue.seed_position(PERP, D("-3"))  # after the funding time: the payment is on -2, not -3
    [payment] = await venue.fetch_funding_since(None)
    assert payment == FundingPayment(venue="perp", symbol=PERP, payment_id=f"{PERP}@{int(T0 * 1000)}",
                                     amount=(D(2) * mid * D("0.0001")).quantize(D("1e-8")), currency="USDT", ts=T0)
    assert venue.position("USDT") == payment.amount  # the short received it in its settle currency
    assert await venue.fetch_funding_since(T0 + 1) == []
    clock.advance(H8)
    assert [p.amount for p in await venue.fetch_funding_since(T0 + 1)] == [
        (D(3) * mid * D("0.0001")).quantize(D("1e-8"))]


def test_the_paper_funding_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="funding_interval"):
        SimSettings(funding_interval=1)
    with pytest.raises(ValueError, match="funding_premium_std"):
        SimSettings(funding_premium_std=-0.1)
    assert SimSettings(funding=False).funding is False


# ------------------------------------------------------------------ through the engine, across a restart


async def test_the_hedging_cost_and_pnl_after_a_restart_are_those_before_it(
        tmp_path: Path, ledger_location: Path | str) -> None:
    # volatility 0: the PnL marks at the same mid on both sides; fees in BNB, valued at its quote
    settings = make_settings(tmp_path, perp={"fee_currency": "BNB", "fee_currency_price": "600"})
    async with running_engine(settings, ledger_location=ledger_location) as h:
        await eventually(lambda: ("sim-perp", "BNB/USDT") in h.engine.prices, "the BNB/USDT quote")
        await h.client_fill(Side.BUY, "0.5")
        await eventually(h.in_band, "the hedge")
        await eventually(lambda: h.engine.costs.by_underlying["BTC"].fee > 0, "the hedge's cost")
        before_funding = h.engine.costs.total("BTC")
        poller = FundingPoller.for_engine(h.engine)
        now = time.time()
        h.perp._payments.extend([pay(now - H8, "-7", venue="sim-perp"),  # before the ledger's first fill
                                 pay(now + 1, "-1.25", venue="sim-perp"), pay(now + 2, "0.5", venue="sim-perp")])
        assert await poller.poll_once() == 2
        assert h.engine.costs.total("BTC") == before_funding + D("0.75")
        pnl = h.engine.realized_pnl["BTC"]
        await eventually(lambda: h.engine.realized_pnl["BTC"] == pnl - D("0.75"), "the PnL with the funding")
        status = h.engine.status()["underlyings"]["BTC"]
        gauges = {kind: h.sample("hedgerd_hedge_cost", underlying="BTC", kind=kind)
                  for kind in ("fee", "spread", "slippage", "funding")}
        assert gauges["funding"] == pytest.approx(0.75)
        assert status["hedging_cost"]["unvalued_fees"] == 0
    async with running_engine(settings, ledger_location=ledger_location) as h:  # the BNB fee as valued, not unvalued
        assert h.engine.status()["underlyings"]["BTC"]["hedging_cost"] == status["hedging_cost"]
        assert {kind: h.sample("hedgerd_hedge_cost", underlying="BTC", kind=kind) for kind in gauges} == gauges
        h.engine.evaluate_soon()
        await eventually(lambda: h.engine.realized_pnl.get("BTC") is not None, "a PnL mark")
        assert h.engine.status()["underlyings"]["BTC"]["realized_pnl"] == status["realized_pnl"]
        assert h.engine.pnl.funding["BTC"] == D("-0.75")



async def test_the_rebuilt_cost_of_an_inverse_hedge_counts_its_contracts_as_the_live_one(
        ledger_location: Path | str) -> None:
    # 60 contracts of 10 USD at 60 000 are 0.01 BTC; the fee is charged in BTC
    inverse = Instrument(symbol=INVERSE, kind=InstrumentKind.INVERSE, underlying="BTC", quote="USD", settle="BTC",
                         contract_size=D(10))
    async with InventoryLedger(ledger_location) as ledger:
        live = CostBook(Metrics(), {})
        live.track("BTC", "inv", INVERSE, inverse)
        await live.rebuild(ledger)
        intent = await ledger.new_intent(underlying="BTC", venue="inv", symbol=INVERSE, side=Side.BUY, amount=D(60),
                                         created_at=T0, decision_mid=D(59995), decision_half_spread=D(5))
        live.decided([intent])
        fill = Fill(venue="inv", trade_id="t1", symbol=INVERSE, side=Side.BUY, amount=D(60), price=D(60000),
                    fee=D("0.000001"), fee_currency="BTC", ts=T0 + 1, client_order_id=intent.client_order_id)
        await ledger.record_fill(fill)
        live.on_fills([fill])
        cost = live.by_underlying["BTC"]
        assert (cost.spread, cost.slippage, cost.fee) == (D("0.05"), 0, D("0.06"))
        rebuilt = CostBook(Metrics(), {})
        rebuilt.track("BTC", "inv", INVERSE, inverse)
        await rebuilt.rebuild(ledger)
        assert rebuilt.status("BTC") == live.status("BTC")

def test_a_price_update_is_not_a_conversion_of_another_venue() -> None:
    book = CostBook(Metrics(), {("other", "BTC/USD:BTC"): PriceUpdate("other", "BTC/USD:BTC", D(1), D(1), T0)})
    book.track("BTC", "inv", "BTC/USD:BTC")
    book.on_funding([pay(T0, "-0.001", venue="inv", symbol="BTC/USD:BTC", currency="BTC")])
    assert book.by_underlying["BTC"].unvalued_funding == 1
