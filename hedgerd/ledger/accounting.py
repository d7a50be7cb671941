"""Pure position accounting: what fills do to positions, venue totals and trade totals.

A spot fill on ``BASE/QUOTE`` moves (venue, BASE) by the signed amount and (venue, QUOTE) by
minus signed amount x price; a derivative fill moves (venue, symbol) by the signed amount (base
units); a fee with a fee currency is subtracted from (venue, fee_currency). Venue totals sum fee
amounts as reported, whatever their currency.

:func:`apply_fills` is the one place this is written: the ledger's commits, its journal
aggregate (rebuild and verify), the simulator's tracker and the tests' oracle all use it. No I/O.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hedgerd.models import ZERO, Fill, Side, split_symbol

#: Position arithmetic: wide enough that sums of exchange-precision amounts never round.
ARITHMETIC = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN,
                             traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])

_BUY = Side.BUY

PositionKey = tuple[str, str]
"""(venue, asset): a spot asset, or a derivative's symbol."""


@dataclass(frozen=True, slots=True)
class TradeTotals:
    """What the journaled fills of one ``(venue, symbol)`` add up to (tracked by the ledger).

    - ``fills``: number of fills;
    - ``amount``: net base units bought (buys - sells), less fees charged in the base currency;
    - ``notional``: net quote paid, ``sum(signed amount x price)`` (positive = spent);
    - ``fees``: fees charged in the quote (or settle) currency, or with no currency given.

    Fees in any other currency (e.g. an exchange token) are not included: they cannot be
    valued without a price of their own. Linear instruments only (price in quote per base).
    """

    fills: int = 0
    amount: Decimal = ZERO
    notional: Decimal = ZERO
    fees: Decimal = ZERO


@dataclass(slots=True)
class VenueTotals:
    """Fill count, fees (as reported, any currency) and latest fill timestamp of one venue."""

    fills: int = 0
    fees: Decimal = ZERO
    last_fill_ts: float | None = None


@dataclass(slots=True)
class Snapshot:
    """Aggregates derived from the fills journal."""

    positions: dict[PositionKey, Decimal] = field(default_factory=dict)
    venues: dict[str, VenueTotals] = field(default_factory=dict)
    order_fills: dict[str, Decimal] = field(default_factory=dict)
    trades: dict[tuple[str, str], TradeTotals] = field(default_factory=dict)


@dataclass(slots=True)
class FillsApplied:
    """What a batch of fills changed: the new absolute value of every position and total it
    touched, and per-batch sums the caller adds to state of its own."""

    positions: dict[PositionKey, Decimal] = field(default_factory=dict)
    venues: dict[str, VenueTotals] = field(default_factory=dict)
    trades: dict[tuple[str, str], TradeTotals] = field(default_factory=dict)
    fills_by_symbol: dict[tuple[str, str], int] = field(default_factory=dict)
    order_fills: dict[str, Decimal] = field(default_factory=dict)  # amount filled per client order id
    hedge_fees: dict[str, Decimal] = field(default_factory=dict)  # per venue: fees of fills with a client id


@functools.lru_cache(maxsize=4096)
def spot_pair(symbol: str) -> tuple[str, str] | None:
    """(base, quote) of a spot symbol; None for a derivative (positions keyed by symbol)."""
    base, quote, settle = split_symbol(symbol)
    return None if settle is not None else (base, quote)


def _moves(venue: str, symbol: str, base: Decimal, notional: Decimal) -> tuple[tuple[PositionKey, Decimal], ...]:
    """The position moves of trading ``base`` units of ``symbol`` for ``notional`` (both signed)."""
    pair = spot_pair(symbol)
    if pair is None:
        return (((venue, symbol), base),)
    return (((venue, pair[0]), base), ((venue, pair[1]), -notional))


def trade_moves(fill: Fill) -> dict[PositionKey, Decimal]:
    """How the trade itself moves positions (its fee left out)."""
    signed = fill.amount if fill.side is _BUY else -fill.amount
    return dict(_moves(fill.venue, fill.symbol, signed, signed * fill.price))


def fee_split(symbol: str, fee: Decimal, fee_currency: str | None) -> tuple[Decimal, Decimal]:
    """(fee in base units, fee in quote units) of a fill, as :class:`TradeTotals` counts them."""
    if not fee:
        return ZERO, ZERO
    base, quote, settle = split_symbol(symbol)
    if fee_currency is None or fee_currency in (quote, settle):
        return ZERO, fee
    if fee_currency == base:
        return fee, ZERO
    return ZERO, ZERO  # another currency (e.g. an exchange token): not valued


def add_trades(totals: TradeTotals | None, fills: int, amount: Decimal, notional: Decimal,
               fees: Decimal) -> TradeTotals:
    """``totals`` (None: nothing yet) plus the given sums."""
    if totals is None:
        return TradeTotals(fills, amount, notional, fees)
    return TradeTotals(totals.fills + fills, totals.amount + amount, totals.notional + notional,
                       totals.fees + fees)


def apply_fills(fills: Iterable[Fill], positions: Mapping[PositionKey, Decimal],
                venues: Mapping[str, VenueTotals],
                trades: Mapping[tuple[str, str], TradeTotals]) -> FillsApplied:
    """Account ``fills`` (new, in journal order) on top of ``positions``, ``venues`` and
    ``trades`` (left unchanged); return the new values of what they touched. Splitting fills
    into batches in any way gives the same result (exactly, in :data:`ARITHMETIC`)."""
    by_symbol: dict[tuple[str, str], list[Any]] = {}  # -> [signed base, signed notional, count, max ts]
    fees: dict[tuple[str, str | None], Decimal] = {}
    split_fees: dict[tuple[str, str], list[Decimal]] = {}  # -> [base fees, quote fees]
    applied = FillsApplied()
    order_fills = applied.order_fills
    hedge_fees = applied.hedge_fees
    for f in fills:
        key = (f.venue, f.symbol)
        signed = f.amount if f.side is _BUY else -f.amount
        entry = by_symbol.get(key)
        if entry is None:
            by_symbol[key] = [signed, signed * f.price, 1, f.ts]
        else:
            entry[0] += signed
            entry[1] += signed * f.price
            entry[2] += 1
            if f.ts > entry[3]:
                entry[3] = f.ts
        if f.fee:
            fee_key = (f.venue, f.fee_currency)
            fees[fee_key] = fees.get(fee_key, ZERO) + f.fee
            base_fee, quote_fee = fee_split(f.symbol, f.fee, f.fee_currency)
            split = split_fees.setdefault(key, [ZERO, ZERO])
            split[0] += base_fee
            split[1] += quote_fee
        if f.client_order_id is not None:
            cid = f.client_order_id
            order_fills[cid] = order_fills.get(cid, ZERO) + f.amount
            if f.fee:
                hedge_fees[f.venue] = hedge_fees.get(f.venue, ZERO) + f.fee

    moved = applied.positions
    new_venues = applied.venues

    def move(position_key: PositionKey, delta: Decimal) -> None:
        current = moved.get(position_key)
        if current is None:
            current = positions.get(position_key, ZERO)
        moved[position_key] = current + delta

    def venue_totals(venue: str) -> VenueTotals:
        totals = new_venues.get(venue)
        if totals is None:
            old = venues.get(venue)
            totals = new_venues[venue] = (VenueTotals(old.fills, old.fees, old.last_fill_ts)
                                          if old is not None else VenueTotals())
        return totals

    for (venue, symbol), (base_delta, notional, count, max_ts) in by_symbol.items():
        for position_key, delta in _moves(venue, symbol, base_delta, notional):
            move(position_key, delta)
        totals = venue_totals(venue)
        totals.fills += count
        if totals.last_fill_ts is None or max_ts > totals.last_fill_ts:
            totals.last_fill_ts = max_ts
        applied.fills_by_symbol[(venue, symbol)] = count
        base_fee, quote_fee = split_fees.get((venue, symbol), (ZERO, ZERO))
        applied.trades[(venue, symbol)] = add_trades(trades.get((venue, symbol)), count,
                                                     base_delta - base_fee, notional, quote_fee)
    for (venue, currency), fee in fees.items():
        venue_totals(venue).fees += fee
        if currency:
            move((venue, currency), -fee)
    return applied
