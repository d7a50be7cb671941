"""Pure risk arithmetic: net delta per underlying and a guard against bad prices.

Nothing here does I/O or reads a clock; the engine feeds in ledger positions, the perp
position, the executor's in-flight quantity and prices, and acts on what comes out.

Net delta of one underlying, in base units (positive = long)::

    net_delta = inventory x hedge_ratio + perp_position + in_flight

``in_flight`` is the signed quantity of hedge orders already sent (or of unknown outcome)
whose fills have not reached the ledger yet. Leaving it out makes the next evaluation see
the same exposure again and hedge it a second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from hedgerd.ledger.accounting import TradeTotals
from hedgerd.models import ZERO, PriceUpdate, split_symbol


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


def make_snapshot(*, underlying: str, inventory: Decimal, hedge_ratio: Decimal, perp_position: Decimal,
                  in_flight: Decimal, mid: Decimal | None) -> DeltaSnapshot:
    """Compute net delta (and its notional when ``mid`` is known) into a :class:`DeltaSnapshot`."""
    delta = net_delta(inventory, hedge_ratio, perp_position, in_flight)
    return DeltaSnapshot(underlying=underlying, inventory=inventory, hedge_ratio=hedge_ratio,
                         perp_position=perp_position, in_flight=in_flight, net_delta=delta, mid=mid,
                         notional=None if mid is None else delta * mid)


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


# --------------------------------------------------------------------------------------------
# Hedged-book PnL (the realized-loss kill-switch trigger)
# --------------------------------------------------------------------------------------------


def trade_pnl(totals: TradeTotals, mid: Decimal) -> Decimal:
    """PnL of a symbol's trades marked at ``mid``: ``amount x mid - notional - fees`` (quote units).

    With every position closed this is the realized PnL; otherwise it also marks what is
    still held at ``mid``.
    """
    return totals.amount * mid - totals.notional - totals.fees


def book_keys(trades: Iterable[tuple[str, str]], inventory: Iterable[tuple[str, str]],
              hedge: tuple[str, str]) -> list[tuple[str, str]]:
    """The ``(venue, symbol)`` keys among ``trades`` that belong to one underlying's book
    (see :func:`hedge_book_pnl`)."""
    quote = split_symbol(hedge[1])[1]
    sources = set(inventory)
    book: list[tuple[str, str]] = []
    for venue, symbol in trades:
        if (venue, symbol) == hedge or (venue, symbol) in sources:  # a derivative source is keyed by symbol
            book.append((venue, symbol))
            continue
        base, symbol_quote, settle = split_symbol(symbol)
        if settle is None and symbol_quote == quote and (venue, base) in sources:
            book.append((venue, symbol))
    return book


def _book_trades(trades: Mapping[tuple[str, str], TradeTotals], inventory: Iterable[tuple[str, str]],
                 hedge: tuple[str, str]) -> list[TradeTotals]:
    """The trade totals that belong to one underlying's book."""
    return [trades[key] for key in book_keys(trades, inventory, hedge)]


def untraded_quantity(positions: Mapping[tuple[str, str], Decimal], trades: Mapping[tuple[str, str], TradeTotals],
                      *, inventory: Iterable[tuple[str, str]], hedge: tuple[str, str]) -> Decimal:
    """Base units the book holds that no journaled trade accounts for (e.g. balances adopted at startup).

    ``inventory positions + hedge position - net amount traded on the book's symbols``; zero
    for a ledger that started empty and only traded the book's symbols.
    """
    sources = list(inventory)
    held = inventory_delta(positions, sources) + positions.get(hedge, ZERO)
    return held - sum((t.amount for t in _book_trades(trades, sources, hedge)), ZERO)


def hedge_book_pnl(trades: Mapping[tuple[str, str], TradeTotals], *, inventory: Iterable[tuple[str, str]],
                   hedge: tuple[str, str], mid: Decimal,
                   untraded: tuple[Decimal, Decimal] = (ZERO, ZERO)) -> Decimal:
    """PnL of one underlying's hedged book, marked at the hedge mid (quote units).

    The book is every journaled trade on the hedge instrument ``hedge = (venue, symbol)`` and,
    for each inventory source ``(venue, asset)``, on that venue's spot symbols with base
    ``asset`` quoted in the hedge's quote currency (or on the symbol itself when the source is
    a derivative). Its PnL is :func:`trade_pnl` summed over them, since the ledger began:
    client spread captured, minus hedge spread and fees, plus the mark of the residual
    (unhedged) delta, which the band keeps small. Spot symbols quoted in another currency are
    left out (no conversion price).

    ``untraded = (quantity, mark)``: base units held without a journaled trade (see
    :func:`untraded_quantity`), valued from ``mark`` on, adding ``quantity x (mid - mark)``.
    Without it, a hedge of an adopted balance would look like an open position.
    """
    return book_pnl(_book_trades(trades, inventory, hedge), mid=mid, untraded=untraded)


def book_pnl(book: Iterable[TradeTotals], *, mid: Decimal,
             untraded: tuple[Decimal, Decimal] = (ZERO, ZERO)) -> Decimal:
    """:func:`hedge_book_pnl` of a book's trade totals already picked (see :func:`book_keys`)."""
    total = sum((trade_pnl(t, mid) for t in book), ZERO)
    quantity, mark = untraded
    return total + quantity * (mid - mark) if quantity else total
