"""The risk pass's prices, pure (hedgerd.risk.prices): storing, ageing, staleness and the log throttle."""

from __future__ import annotations

from decimal import Decimal

from hedgerd.models import PriceUpdate
from hedgerd.risk.prices import LogThrottle, PriceBook

PERP = "BTC/USDT:USDT"


def price(mid: int, venue: str = "perp", symbol: str = PERP) -> PriceUpdate:
    return PriceUpdate(venue=venue, symbol=symbol, bid=Decimal(mid) - 1, ask=Decimal(mid) + 1, ts=0.0)


def test_ages_count_from_the_last_price_or_from_the_start() -> None:
    book = PriceBook(max_jump=Decimal("0.1"))
    assert book.age("perp", PERP, now=12.0, since=10.0) == 2.0
    book.store(price(100), now=11.0)
    assert book.latest[("perp", PERP)] == price(100)
    assert book.age("perp", PERP, now=12.0, since=10.0) == 1.0


def test_the_wait_ends_just_after_the_first_feed_goes_stale() -> None:
    book = PriceBook(max_jump=Decimal("0.1"))
    book.store(price(100), now=0.0)
    feeds = [("perp", PERP, 5.0), ("perp", "ETH/USDT:USDT", 3.0)]  # ETH: no price yet, counted from since=1
    assert book.next_stale(feeds, now=2.0, since=1.0, wait=10.0) == 2.0 + 0.01
    assert book.next_stale(feeds, now=4.5, since=1.0, wait=10.0) == 0.5 + 0.01  # ETH is stale: no bound from it
    assert book.next_stale(feeds, now=9.0, since=1.0, wait=10.0) == 10.0  # both stale: the tick


def test_a_resume_resets_only_stale_anchors() -> None:
    book = PriceBook(max_jump=Decimal("0.1"))
    book.store(price(100), now=0.0)
    book.guard.check(price(100))
    book.store(price(100, symbol="ETH/USDT:USDT"), now=9.0)
    book.guard.check(price(100, symbol="ETH/USDT:USDT"))
    book.reset_stale_anchors(now=10.0, max_age=5.0)
    assert book.guard.last_mid("perp", PERP) is None
    assert book.guard.last_mid("perp", "ETH/USDT:USDT") == Decimal(100)


def test_the_log_throttle_admits_a_line_per_interval_and_counts_the_rest() -> None:
    throttle = LogThrottle(10.0)
    assert throttle.admit("a", 0.0) == 0
    assert throttle.admit("a", 1.0) is None
    assert throttle.admit("b", 1.0) == 0  # keys are separate
    assert throttle.admit("a", 9.9) is None
    assert throttle.admit("a", 10.0) == 2
    assert throttle.admit("a", 12.0) is None
