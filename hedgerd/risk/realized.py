"""Realized PnL of one position, by average cost or FIFO; pure arithmetic, no I/O.

A fill that moves the position away from zero opens; one that moves it toward zero closes
(realizes) part of it, and one that crosses zero closes all of it and opens the rest at its
price. What a close realizes depends on which cost it is matched against:

- ``average``: the average cost of the open position. The open position's basis (its cost
  in quote units) is kept whole rather than as an average price, and a close takes out its
  share of it (all of it when the position is closed), so at flat nothing is left over.
- ``fifo``: the oldest open lots first. Lots are only those of the open position: a close
  consumes them from the front, so memory is bounded by the fills that make up the open
  position, never by the fill history (consecutive lots at one price are merged).

Both realize the same total once the position is back at zero (the cash of the round trip);
between, they split the same total PnL (realized + unrealized at a mid) differently. Fees
are not part of it (see :mod:`hedgerd.risk.cost`). Worked example: docs/pnl.md.
"""

from __future__ import annotations

import decimal
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from hedgerd.ledger.accounting import ARITHMETIC
from hedgerd.models import ZERO

PnlMethod = Literal["average", "fifo"]
PNL_METHODS: tuple[PnlMethod, ...] = ("average", "fifo")


@dataclass(frozen=True, slots=True)
class AverageCost:
    """An open position (signed base units), its basis (signed quote units: what opening it cost)
    and what its closes realized so far."""

    position: Decimal = ZERO
    basis: Decimal = ZERO
    realized: Decimal = ZERO

    @property
    def price(self) -> Decimal | None:
        """The average cost per unit of the open position (None when flat)."""
        return ARITHMETIC.divide(self.basis, self.position) if self.position else None

    def unrealized(self, mid: Decimal) -> Decimal:
        """The open position marked at ``mid``, against its basis."""
        return ARITHMETIC.subtract(ARITHMETIC.multiply(self.position, mid), self.basis)


def average_fill(state: AverageCost, signed: Decimal, price: Decimal) -> AverageCost:
    """``state`` after a fill of ``signed`` base units (buy positive) at ``price``.

    In :data:`~hedgerd.ledger.accounting.ARITHMETIC`: only a partial close's share of the basis
    is rounded (at 60 digits), and the basis it leaves goes out whole at the next flat.
    """
    if not signed:
        return state
    with decimal.localcontext(ARITHMETIC):
        return _average_fill(state, signed, price)


def _average_fill(state: AverageCost, signed: Decimal, price: Decimal) -> AverageCost:
    position, basis = state.position, state.basis
    if not position or (position > 0) == (signed > 0):  # opening (or adding)
        return AverageCost(position + signed, basis + signed * price, state.realized)
    if abs(signed) < abs(position):  # a partial close: its share of the basis goes out
        released = basis * (-signed) / position
        realized = -signed * price - released
        return AverageCost(position + signed, basis - released, state.realized + realized)
    # closes everything (the whole basis goes out, exactly), and opens the rest
    realized = position * price - basis
    rest = position + signed
    return AverageCost(rest, rest * price, state.realized + realized)


@dataclass(frozen=True, slots=True)
class Lot:
    """An open lot: signed base units at one price."""

    amount: Decimal
    price: Decimal


@dataclass(slots=True)
class FifoLots:
    """The open position as lots, oldest first, and what its closes realized so far.

    :meth:`fill` changes these lots and nothing else (a copy per fill would cost O(open lots)).
    """

    lots: deque[Lot] = field(default_factory=deque)
    realized: Decimal = ZERO

    @property
    def position(self) -> Decimal:
        with decimal.localcontext(ARITHMETIC):
            return sum((lot.amount for lot in self.lots), ZERO)

    @property
    def basis(self) -> Decimal:
        with decimal.localcontext(ARITHMETIC):
            return sum((lot.amount * lot.price for lot in self.lots), ZERO)

    def unrealized(self, mid: Decimal) -> Decimal:
        """The open lots marked at ``mid``, against what each cost."""
        with decimal.localcontext(ARITHMETIC):
            return sum((lot.amount * (mid - lot.price) for lot in self.lots), ZERO)

    def fill(self, signed: Decimal, price: Decimal) -> Decimal:
        """Apply a fill of ``signed`` base units at ``price``; return what it realized (exact:
        products and sums only, in :data:`~hedgerd.ledger.accounting.ARITHMETIC`)."""
        with decimal.localcontext(ARITHMETIC):
            return self._fill(signed, price)

    def _fill(self, signed: Decimal, price: Decimal) -> Decimal:
        lots = self.lots
        realized = ZERO
        remaining = signed
        while remaining and lots and (lots[0].amount > 0) != (remaining > 0):
            head = lots[0]
            if abs(remaining) >= abs(head.amount):  # the oldest lot closes whole
                realized += head.amount * (price - head.price)
                remaining += head.amount
                lots.popleft()
            else:
                realized += -remaining * (price - head.price)
                lots[0] = Lot(head.amount + remaining, head.price)
                remaining = ZERO
        if remaining:
            if lots and lots[-1].price == price:
                lots[-1] = Lot(lots[-1].amount + remaining, price)
            else:
                lots.append(Lot(remaining, price))
        self.realized += realized
        return realized


@dataclass(slots=True)
class PositionPnl:
    """One position's realized PnL by both methods at once, so that the method reported can
    change at any time (a config reload) without replaying the fills."""

    average: AverageCost = field(default_factory=AverageCost)
    fifo: FifoLots = field(default_factory=FifoLots)

    def fill(self, signed: Decimal, price: Decimal) -> None:
        self.average = average_fill(self.average, signed, price)
        self.fifo.fill(signed, price)

    def realized(self, method: PnlMethod) -> Decimal:
        return self.average.realized if method == "average" else self.fifo.realized

    def unrealized(self, method: PnlMethod, mid: Decimal) -> Decimal:
        return self.average.unrealized(mid) if method == "average" else self.fifo.unrealized(mid)


def realized_pnl(fills: Iterable[tuple[Decimal, Decimal]], method: PnlMethod) -> Decimal:
    """What ``fills`` (signed base units, price; oldest first) realize from flat, by ``method``."""
    pnl = PositionPnl()
    for signed, price in fills:
        pnl.fill(signed, price)
    return pnl.realized(method)
