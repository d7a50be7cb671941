"""Pure risk arithmetic: net delta per underlying and a guard against bad prices.

Nothing here does I/O or reads a clock; the engine feeds in ledger positions, the perp
position, the executor's in-flight quantity and prices, and acts on what comes out.

Net delta of one underlying, in base units (positive = long)::

    net_delta = inventory x hedge_ratio + perp_position + in_flight (+ collateral, when counted)

``inventory`` is the delta of every inventory position (spot, linear, inverse, options: see
:mod:`hedgerd.risk.book`), ``perp_position`` and ``in_flight`` are the hedge position and the
hedge orders in flight valued as delta (the same as their amounts for a linear hedge).

``in_flight`` is the signed quantity of hedge orders already sent (or of unknown outcome)
whose fills have not reached the ledger yet. Leaving it out makes the next evaluation see
the same exposure again and hedge it a second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from hedgerd.models import ZERO, PriceUpdate


def inventory_delta(positions: Mapping[tuple[str, str], Decimal],
                    sources: Iterable[tuple[str, str]]) -> Decimal:
    """Sum of the ledger positions ``(venue, asset)`` that a hedge covers, in base units.

    A source listed twice is counted once; a source with no position counts as zero.
    """
    return sum((positions.get(source, ZERO) for source in dict.fromkeys(sources)), ZERO)


def net_delta(inventory: Decimal, hedge_ratio: Decimal, perp_position: Decimal,
              in_flight: Decimal) -> Decimal:
    """``inventory * hedge_ratio + perp_position + in_flight`` (all signed base units)."""
    return inventory * hedge_ratio + perp_position + in_flight


@dataclass(frozen=True, slots=True)
class DeltaSnapshot:
    """The inputs and result of one net-delta computation for one underlying.

    ``mid`` is the hedge instrument's last accepted mid price (None before the first one);
    ``notional`` is ``net_delta * mid`` in quote units, None when there is no price.
    """

    underlying: str
    inventory: Decimal
    hedge_ratio: Decimal
    perp_position: Decimal
    in_flight: Decimal
    net_delta: Decimal
    mid: Decimal | None
    notional: Decimal | None
    book: BookFigures | None = None
    """The by-source breakdown and greeks (the risk pass always sets them; None when made without)."""

    def delta_by_source(self) -> dict[str, Decimal]:
        """Each part of net delta (base units, the hedge ratio applied to inventory) by source."""
        if self.book is not None:
            return dict(self.book.by_source)
        return {"inventory": self.inventory * self.hedge_ratio, "hedge": self.perp_position,
                "in_flight": self.in_flight}

    def as_log_fields(self) -> dict[str, str | None]:
        """Every field as a string (Decimals exact), for one structured log line."""
        return {
            "underlying": self.underlying,
            "inventory": str(self.inventory),
            "hedge_ratio": str(self.hedge_ratio),
            "perp_position": str(self.perp_position),
            "in_flight": str(self.in_flight),
            "net_delta": str(self.net_delta),
            "mid": None if self.mid is None else str(self.mid),
            "notional": None if self.notional is None else str(self.notional),
        }


@dataclass(frozen=True, slots=True)
class BookFigures:
    """The instrument-aware part of a :class:`DeltaSnapshot`.

    ``by_source``: delta by :data:`hedgerd.risk.book.DELTA_SOURCES` (inventory sources with the
    hedge ratio applied). ``gamma`` (base units per unit of price) and ``vega`` (quote per vol
    point) are the book's, hedge included. ``hedge_contracts`` / ``in_flight_contracts`` are the
    hedge position and orders in flight in contracts. ``greeks_disagreement`` is |options delta
    by model - by venue| (None when not known), ``held_options`` the options whose quotes must
    stay fresh, ``unvalued`` what could not be valued (no decision is made on such a book).
    """

    by_source: tuple[tuple[str, Decimal], ...]
    collateral: Decimal = ZERO
    gamma: float = 0.0
    vega: float = 0.0
    hedge_contracts: Decimal = ZERO
    in_flight_contracts: Decimal = ZERO
    greeks_disagreement: Decimal | None = None
    held_options: tuple[tuple[str, str], ...] = ()
    unvalued: tuple[str, ...] = ()


def make_snapshot(*, underlying: str, inventory: Decimal, hedge_ratio: Decimal, perp_position: Decimal,
                  in_flight: Decimal, mid: Decimal | None, collateral: Decimal | None = None,
                  book: BookFigures | None = None) -> DeltaSnapshot:
    """Compute net delta (and its notional when ``mid`` is known) into a :class:`DeltaSnapshot`.

    ``collateral`` (base units) is added when given, not scaled by the hedge ratio.
    """
    delta = net_delta(inventory, hedge_ratio, perp_position, in_flight)
    if collateral is not None:
        delta += collateral
    return DeltaSnapshot(underlying=underlying, inventory=inventory, hedge_ratio=hedge_ratio,
                         perp_position=perp_position, in_flight=in_flight, net_delta=delta, mid=mid,
                         notional=None if mid is None else delta * mid, book=book)


# Stable rejection kinds: every reason returned by PriceGuard.check starts with one of these,
# then ": " and the details, so ``reason.split(":")[0]`` is a bounded metric label.
NOT_A_NUMBER = "nan"
INFINITE = "infinite"
NON_POSITIVE = "non_positive"
CROSSED = "crossed"
WILD_JUMP = "wild_jump"
OUT_OF_ORDER = "out_of_order"


class PriceGuard:
    """Validates best bid/ask updates before anything is sized on them.

    Rejected (reason returned, update not remembered):

    - ``nan`` / ``infinite``: a NaN or infinite bid or ask (or a value that is not a number);
    - ``non_positive``: a bid or ask at or below zero;
    - ``crossed``: bid above ask (a locked book, bid == ask, is accepted);
    - ``wild_jump``: the mid moved by more than ``max_jump`` (a fraction, 0.2 = 20 %) from the
      last *accepted* mid of the same ``(venue, symbol)``;
    - ``out_of_order``: a venue timestamp older than the last accepted one (timestamps <= 0
      are treated as unknown and not compared).

    A genuine big move is not accepted automatically, however many consistent updates
    confirm it: the product fails closed. Rejected prices are counted (:attr:`rejected`), the
    price stops being refreshed, the stale-price trigger halts trading, and a person looks.
    Accepting after N "consistent" wild ticks would let a feed stuck on a bad level (or a
    manipulated thin book) size real orders. The way forward is deliberate: after checking,
    the operator resumes and the engine calls :meth:`reset` so the next sane price becomes
    the new anchor. The jump check compares with the last accepted mid however old it is;
    the stale-price trigger covers an anchor gone old.

    The guard is pure (no clock, no I/O) but stateful: one instance holds the last accepted
    mid and timestamp per ``(venue, symbol)``.
    """

    __slots__ = ("_last", "max_jump", "rejected")

    def __init__(self, max_jump: Decimal) -> None:
        if not max_jump > 0:
            raise ValueError(f"max_jump must be a positive fraction, got {max_jump}")
        self.max_jump = max_jump
        self._last: dict[tuple[str, str], tuple[Decimal, float]] = {}
        self.rejected: Counter[str] = Counter()  # rejection kind -> count

    def check(self, update: PriceUpdate) -> str | None:
        """Validate ``update``; remember it and return None if good, else return the reason."""
        reason = self._reason(update)
        if reason is None:
            self._last[(update.venue, update.symbol)] = (update.mid, update.ts)
        else:
            self.rejected[reason.split(":", 1)[0]] += 1
        return reason

    def last_mid(self, venue: str, symbol: str) -> Decimal | None:
        """The last accepted mid for ``(venue, symbol)``, None if none yet (or after a reset)."""
        last = self._last.get((venue, symbol))
        return None if last is None else last[0]

    def reset(self, venue: str | None = None, symbol: str | None = None) -> None:
        """Forget the anchor of one ``(venue, symbol)``, or of everything when called bare.

        The next sane update is then accepted whatever its level. Meant for a deliberate
        operator resume after a halt caused by rejected prices.
        """
        if venue is None and symbol is None:
            self._last.clear()
            return
        for key in [k for k in self._last if venue in (None, k[0]) and symbol in (None, k[1])]:
            del self._last[key]

    def _reason(self, update: PriceUpdate) -> str | None:
        bid, ask = update.bid, update.ask
        for name, value in (("bid", bid), ("ask", ask)):
            if not isinstance(value, Decimal):  # defensive: a connector let a raw value through
                return f"{NOT_A_NUMBER}: {name} is {type(value).__name__} {value!r}"
            if value.is_nan():
                return f"{NOT_A_NUMBER}: {name} is NaN"
            if value.is_infinite():
                return f"{INFINITE}: {name} is {value}"
            if value <= 0:
                return f"{NON_POSITIVE}: {name} {value}"
        if bid > ask:
            return f"{CROSSED}: bid {bid} > ask {ask}"
        last = self._last.get((update.venue, update.symbol))
        if last is None:
            return None
        last_mid, last_ts = last
        if update.ts > 0 and last_ts > 0 and update.ts < last_ts:
            return f"{OUT_OF_ORDER}: ts {update.ts} < last accepted {last_ts}"
        mid = update.mid
        jump = abs(mid - last_mid) / last_mid
        if jump > self.max_jump:
            return (f"{WILD_JUMP}: mid {mid} vs last {last_mid} "
                    f"({jump:.2%} > {self.max_jump:.2%})")
        return None

