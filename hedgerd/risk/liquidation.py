"""The hedge position's liquidation safety, pure: how far the mark is from the liquidation price,
and the liquidation price of a linear or an inverse perpetual under a simple cross or isolated
margin model.

``distance = |mark - liquidation price| / mark``: the fraction the mark may move against the
position before the venue liquidates it. A flat position, a missing figure, or a liquidation
price of 0 or less (Binance reports "0" for a position that cannot be liquidated) has none.
"""

from __future__ import annotations

from decimal import Decimal

from hedgerd.models import ZERO, PositionRisk


def liquidation_distance(risk: PositionRisk, mark: Decimal | None = None) -> Decimal | None:
    """The liquidation distance as a fraction of the mark (see the module docstring), or None;
    at ``mark`` when given (a fresher price than the venue's mark when it answered)."""
    liquidation = risk.liquidation_price
    mark = risk.mark if mark is None else mark
    if not risk.position or liquidation is None or mark is None or liquidation <= 0 or mark <= 0:
        return None
    return abs(mark - liquidation) / mark


def linear_liquidation_price(position: Decimal, entry: Decimal, collateral: Decimal,
                             maintenance_rate: Decimal) -> Decimal | None:
    """The mark at which a linear perpetual position is liquidated: where its collateral plus its
    unrealized PnL falls to the maintenance margin,

        collateral + position x (P - entry) = |position| x P x maintenance_rate
        P = (position x entry - collateral) / (position - |position| x maintenance_rate)

    (Binance's USD-M formula for a single position at its first margin tier). ``collateral`` is
    the wallet balance for cross margin (less other positions' maintenance, plus their PnL) or
    the position's isolated margin. None when flat; 0 when no positive price liquidates it
    (e.g. a long backed by more than its notional).
    """
    if not position:
        return None
    price = (position * entry - collateral) / (position - abs(position) * maintenance_rate)
    return price if price > 0 else ZERO


def margin_ratio(position: Decimal, entry: Decimal, mark: Decimal, collateral: Decimal,
                 maintenance_rate: Decimal) -> Decimal | None:
    """Maintenance margin over margin balance (collateral + unrealized PnL) at ``mark``; 1 or more
    is liquidation. None when flat; infinite once the margin balance is gone."""
    if not position:
        return None
    balance = collateral + position * (mark - entry)
    if balance <= 0:
        return Decimal("Infinity")
    return abs(position) * mark * maintenance_rate / balance


def inverse_liquidation_price(usd: Decimal, entry: Decimal, collateral: Decimal,
                              maintenance_rate: Decimal) -> Decimal | None:
    """The mark at which an inverse perpetual position of ``usd`` (signed: contracts x contract
    size) is liquidated, everything in the coin: where collateral plus unrealized PnL falls to the
    maintenance margin,

        collateral + usd x (1/entry - 1/P) = |usd| / P x maintenance_rate
        P = (usd + |usd| x maintenance_rate) / (collateral + usd / entry)

    None when flat; 0 when no positive price liquidates it (a short backed by at least its value
    at entry in coin: its loss in coin is bounded by ``|usd| / entry``).
    """
    if not usd:
        return None
    denominator = collateral + usd / entry
    if not denominator:  # a short backed by exactly its value at entry: liquidated only at infinity
        return ZERO
    price = (usd + abs(usd) * maintenance_rate) / denominator
    return price if price > 0 else ZERO


def inverse_margin_ratio(usd: Decimal, entry: Decimal, mark: Decimal, collateral: Decimal,
                         maintenance_rate: Decimal) -> Decimal | None:
    """:func:`margin_ratio` of an inverse position of ``usd``, in the coin."""
    if not usd:
        return None
    balance = collateral + usd * (1 / entry - 1 / mark)
    if balance <= 0:
        return Decimal("Infinity")
    return abs(usd) / mark * maintenance_rate / balance
