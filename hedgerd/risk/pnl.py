"""Hedged-book PnL, pure: what an underlying's journaled trades are worth at the hedge mid (the
realized-loss kill-switch trigger and the ``hedgerd_realized_pnl`` gauge)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

from hedgerd.ledger.accounting import TradeTotals
from hedgerd.models import ZERO, split_symbol
from hedgerd.risk.delta import inventory_delta


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


class BookPnl:
    """Each underlying's hedged-book PnL as of its last mark, with what one mark can reuse for
    the next (the risk pass marks on every event; the book and the untraded quantity rarely change).
    """

    def __init__(self) -> None:
        self.by_underlying: dict[str, Decimal] = {}  # underlying -> PnL at its last mark (quote units)
        self._untraded: dict[str, tuple[Decimal, Decimal]] = {}  # underlying -> (untraded qty, mark)
        self._book_keys: dict[str, tuple[int, list[tuple[str, str]]]] = {}  # underlying -> (#symbols, its book)
        #: underlying -> funding the hedge received (quote; negative: paid), added to its PnL
        #: (kept by :class:`hedgerd.cost_book.CostBook` from the journaled funding payments)
        self.funding: dict[str, Decimal] = {}

    def mark(self, underlying: str, trades: Mapping[tuple[str, str], TradeTotals],
             positions: Callable[[], Mapping[tuple[str, str], Decimal]], *,
             inventory: list[tuple[str, str]], hedge: tuple[str, str], mid: Decimal) -> Decimal:
        """:func:`hedge_book_pnl` of ``underlying`` at ``mid`` plus the funding received, remembered
        in :attr:`by_underlying`.

        Balances no trade accounts for (adopted at startup) are valued from the first mid marked,
        so ``positions`` is only called then.
        """
        untraded = self._untraded.get(underlying)
        if untraded is None:
            untraded = self._untraded[underlying] = (untraded_quantity(
                positions(), trades, inventory=inventory, hedge=hedge), mid)
        book = self._book_keys.get(underlying)
        if book is None or book[0] != len(trades):  # a symbol traded for the first time
            book = self._book_keys[underlying] = (len(trades), book_keys(trades, inventory, hedge))
        pnl = book_pnl([trades[k] for k in book[1]], mid=mid, untraded=untraded) + self.funding.get(underlying, ZERO)
        self.by_underlying[underlying] = pnl
        return pnl
