"""Startup reconciliation decisions, pure (no I/O): where a venue's position snapshot cuts the
stream of trades, and what the ledger does about each position.

A venue answers positions and trades in separate requests while client fills keep landing, so
the snapshot is bracketed: the trades listed *before* the positions were asked for (all of them
inside the positions), the positions with the venue's cursor (:attr:`PositionSnapshot.as_of`,
the venue's timestamp of that state: trades stamped earlier are inside, later ones are not),
and the trades listed *after* the answer. The trades only the second listing has are pending
(:func:`pending_fills`). The cursor places each of them inside or outside the snapshot, except
those stamped in the cursor's own millisecond, and all of them when the venue gives no cursor:
those are ambiguous, and since a venue applies its trades in order, the snapshot holds some
prefix of them (:func:`locate_cut`).

Comparing asks whether the ledger at any possible cut is within tolerance of the venue; adopting
the venue's figure needs the cut exactly and asks for another snapshot otherwise
(:func:`decide`). Every pending trade is journaled afterwards, once (the ledger dedupes by trade
id), so the ledger ends past the snapshot with no trade missing and none counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from hedgerd.models import ZERO, Fill, is_derivative, split_symbol

_TRAILING_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True, slots=True)
class PositionSnapshot:
    """A venue's positions (by symbol for derivatives, by asset for balances) at one moment.

    ``as_of`` maps a position to the venue's own timestamp (epoch seconds) of the state it shows,
    where the venue gives one: every trade on it stamped earlier is included, none stamped later.
    """

    positions: Mapping[str, Decimal]
    as_of: Mapping[str, float] = field(default_factory=dict)


def position_deltas(fill: Fill) -> dict[str, Decimal]:
    """How ``fill`` moves its venue's positions, accounted as the ledger does: a derivative by
    symbol; a spot trade's base and quote assets; the fee in its own currency."""
    signed = fill.signed_amount
    deltas: dict[str, Decimal] = {}
    if is_derivative(fill.symbol):
        deltas[fill.symbol] = signed
    else:
        base, quote, _ = split_symbol(fill.symbol)
        deltas[base] = signed
        deltas[quote] = deltas.get(quote, ZERO) - signed * fill.price
    if fill.fee and fill.fee_currency:
        deltas[fill.fee_currency] = deltas.get(fill.fee_currency, ZERO) - fill.fee
    return deltas


def trade_order(fill: Fill) -> tuple[float, str, int, str]:
    """Sort key for the order a venue applied its trades in: time, then the trade id's trailing
    number (venues number trades upwards; ``"BTC/USDT#123"`` compares as 123, not as text)."""
    found = _TRAILING_NUMBER.search(fill.trade_id)
    if found is None:
        return fill.ts, fill.trade_id, -1, fill.trade_id
    head = fill.trade_id[:found.start()]
    return fill.ts, head, int(found.group(1)), fill.trade_id


def pending_fills(before: Iterable[Fill], after: Iterable[Fill]) -> list[Fill]:
    """The trades listed after the snapshot but not before it, in venue order, each once."""
    seen = {f.trade_id for f in before}
    unique: dict[str, Fill] = {}
    for fill in after:
        if fill.trade_id not in seen:
            unique.setdefault(fill.trade_id, fill)
    return sorted(unique.values(), key=trade_order)


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a snapshot cuts the pending trades of one position.

    ``inside``: what the pending trades the snapshot surely includes add up to; ``ambiguous``:
    the moves of the trades it may or may not include, in venue order (it includes a prefix).
    """

    inside: Decimal = ZERO
    ambiguous: tuple[Decimal, ...] = ()

    @property
    def exact(self) -> bool:
        """True when the snapshot's contents are known trade by trade."""
        return not self.ambiguous

    def offsets(self) -> list[Decimal]:
        """What the snapshot may hold beyond the ledger's journaled trades, one per possible cut."""
        total = self.inside
        out = [total]
        for delta in self.ambiguous:
            total += delta
            out.append(total)
        return out


def usable_cursor(key: str, before: Iterable[Fill], cursor: float | None) -> float | None:
    """``cursor``, unless a trade listed before the snapshot moved ``key`` after it: then the
    venue's timestamp is not the state's (stale, or of something else) and says nothing."""
    if cursor is None:
        return None
    for fill in before:
        if fill.ts > cursor and key in position_deltas(fill):
            return None
    return cursor


def locate_cut(key: str, pending: Sequence[Fill], cursor: float | None) -> Cut:
    """Split the pending trades (venue order) that move ``key`` at the snapshot's cursor.

    Earlier than the cursor: inside. Later: outside (journaled after the snapshot, not compared).
    In the cursor's own millisecond, or with no cursor: ambiguous, since the venue may have
    applied more trades in that millisecond after answering.
    """
    inside = ZERO
    ambiguous: list[Decimal] = []
    for fill in pending:
        delta = position_deltas(fill).get(key)
        if delta is None:
            continue
        if cursor is None or fill.ts == cursor:
            ambiguous.append(delta)
        elif fill.ts < cursor:
            inside += delta
    return Cut(inside=inside, ambiguous=tuple(ambiguous))


@dataclass(frozen=True, slots=True)
class PositionCheck:
    """One position of the venue against the ledger at the cut closest to it."""

    key: str
    venue: Decimal
    ledger: Decimal
    exact: bool  # the cut is known, so ``ledger`` is the ledger at the snapshot

    @property
    def difference(self) -> Decimal:
        """What the venue holds beyond the ledger."""
        return self.venue - self.ledger


def check_position(key: str, venue_qty: Decimal, ledger_qty: Decimal, cut: Cut) -> PositionCheck:
    """Compare ``venue_qty`` with ``ledger_qty`` (the ledger with every trade listed before the
    snapshot journaled and none of the pending ones) moved to each possible cut."""
    nearest = min((ledger_qty + offset for offset in cut.offsets()), key=lambda q: abs(venue_qty - q))
    return PositionCheck(key=key, venue=venue_qty, ledger=nearest, exact=cut.exact)


class Verdict(StrEnum):
    """What reconciliation does about one position."""

    AGREES = "agrees"  # within tolerance at some possible cut: nothing to journal
    ADOPT = "adopt"  # journal the difference as an adjustment
    MISMATCH = "mismatch"  # beyond tolerance at every possible cut: start HALTED
    UNRESOLVED = "unresolved"  # adopting needs the exact cut: take another snapshot
    SETTLED = "settled"  # expired, and the venue has settled it away: close the ledger's position


#: ``"*"`` in a venue's wanted keys: every derivative position of the venue or the ledger there.
EVERY_DERIVATIVE = "*"
# ccxt's unified dated symbols: BTC/USD:BTC-261211 (future), BTC/USD:BTC-261211-58000-C (option)
_UNIFIED_EXPIRY = re.compile(r":[A-Z0-9]+-(\d{2})(\d{2})(\d{2})(?:-|$)")


def expand_keys(keys: Iterable[str], venue_positions: Iterable[str], ledger_positions: Iterable[str]) -> list[str]:
    """The positions to compare: ``keys``, with :data:`EVERY_DERIVATIVE` replaced by every
    derivative symbol the venue reports or the ledger holds on it (options included)."""
    wanted = set(keys)
    if EVERY_DERIVATIVE in wanted:
        wanted.discard(EVERY_DERIVATIVE)
        wanted.update(k for k in (*venue_positions, *ledger_positions) if is_derivative(k))
    return sorted(wanted)


def expiry_day_reached(symbol: str, now: float) -> bool:
    """True when ``symbol`` is a dated ccxt unified symbol whose expiry day (UTC) has begun.

    For a market no longer listed (venues drop instruments once settled), the symbol is all that
    is left to tell expiry by; the day, not the hour, since the hour is the venue's (Deribit 08:00).
    """
    found = _UNIFIED_EXPIRY.search(symbol)
    if found is None:
        return False
    yy, mm, dd = (int(g) for g in found.groups())
    try:
        day = datetime(2000 + yy, mm, dd, tzinfo=UTC)
    except ValueError:
        return False
    return now >= day.timestamp()


def settled_at_expiry(check: PositionCheck, *, expired: bool) -> Decision | None:
    """An expired instrument the venue shows flat was settled in cash (options) or delivered
    (futures) by the venue, which leaves no trade: the ledger's position closes with an
    adjustment to zero instead of a mismatch. None when that is not the case."""
    if not expired or check.venue != 0 or check.ledger == 0:
        return None
    return Decision(Verdict.SETTLED, check, -check.ledger)


@dataclass(frozen=True, slots=True)
class Decision:
    """A :class:`Verdict` with the check behind it and, to adopt, the adjustment."""

    verdict: Verdict
    check: PositionCheck
    adjustment: Decimal = ZERO


def decide(check: PositionCheck, *, tolerance: Decimal, first_sight: bool, adopt_on_first_start: bool,
           adopt_venue_positions: bool) -> Decision:
    """The reconciliation decision for one position.

    A position the ledger has never seen is adopted (even when zero, so it becomes known) when
    ``adopt_on_first_start``; otherwise a difference beyond ``tolerance`` is adopted when
    ``adopt_venue_positions`` and a mismatch if not.
    """
    adopt_first = first_sight and adopt_on_first_start
    if abs(check.difference) <= tolerance and not adopt_first:
        return Decision(Verdict.AGREES, check)
    if adopt_first or adopt_venue_positions:
        if not check.exact:
            return Decision(Verdict.UNRESOLVED, check)
        return Decision(Verdict.ADOPT, check, check.difference)
    return Decision(Verdict.MISMATCH, check)
