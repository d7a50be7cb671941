"""The paper perpetual's margin account: one cross-margined wallet in the settle currency, modelled
on Binance USD-M at its first margin tier, so paper mode shows the liquidation metrics and can be
liquidated like the real venue.

- wallet = ``sim.margin_balance`` + realized PnL (average cost, as the venue computes it) - fees
  charged in the settle currency (a fee in a third currency, e.g. BNB, is not taken from it);
- maintenance margin = |position| x mark x ``sim.maintenance_margin_rate``;
- margin ratio = maintenance margin / (wallet + unrealized PnL);
- liquidation price: where wallet + unrealized PnL = maintenance margin
  (:func:`hedgerd.risk.liquidation.linear_liquidation_price` with the wallet as collateral);
- liquidation: once the mark (the mid) reaches it, the whole position is closed at the mark by a
  trade that is not ours (no client order id, as a venue's liquidation order), and what is left of
  the margin balance, the maintenance margin, is charged as a fee (Binance's insurance clearance).

Left out: margin tiers above the first, leverage and initial margin (orders are never refused
for margin), isolated margin, funding, auto-deleveraging.
"""

from __future__ import annotations

from decimal import Decimal

from hedgerd.models import PositionRisk
from hedgerd.risk.liquidation import linear_liquidation_price, margin_ratio
from hedgerd.risk.realized import AverageCost, average_fill


class PaperMargin:
    """The wallet and position of the paper perpetual (see the module docstring)."""

    def __init__(self, balance: Decimal, maintenance_rate: Decimal) -> None:
        self.maintenance_rate = maintenance_rate
        self._start = balance
        self._fees = Decimal(0)
        self._cost = AverageCost()

    @property
    def wallet(self) -> Decimal:
        return self._start + self._cost.realized - self._fees

    @property
    def position(self) -> Decimal:
        return self._cost.position

    @property
    def entry(self) -> Decimal | None:
        """The position's average entry price (None when flat)."""
        return self._cost.price

    def fill(self, signed: Decimal, price: Decimal, settle_fee: Decimal) -> None:
        """A trade of ``signed`` base units at ``price`` with a fee in the settle currency."""
        self._cost = average_fill(self._cost, signed, price)
        self._fees += settle_fee

    def seed(self, position: Decimal, mark: Decimal) -> None:
        """Set the position without trading (a restart aligned with the ledger), entered at ``mark``."""
        self._cost = AverageCost(position, position * mark, self._cost.realized)

    def liquidation_price(self) -> Decimal | None:
        entry = self.entry
        if entry is None:
            return None
        return linear_liquidation_price(self.position, entry, self.wallet, self.maintenance_rate)

    def risk(self, venue: str, symbol: str, mark: Decimal, ts: float) -> PositionRisk | None:
        """The position's margin at ``mark``; None when flat."""
        entry = self._cost.price
        if entry is None:
            return None
        return PositionRisk(venue=venue, symbol=symbol, position=self.position, mark=mark,
                            liquidation_price=self.liquidation_price(),
                            margin_ratio=margin_ratio(self.position, entry, mark, self.wallet, self.maintenance_rate),
                            ts=ts)

    def liquidates_at(self, mark: Decimal) -> bool:
        """Whether ``mark`` has reached the liquidation price."""
        price = self.liquidation_price()
        if price is None or price <= 0:
            return False
        return mark <= price if self.position > 0 else mark >= price

    def clearance_fee(self, mark: Decimal) -> Decimal:
        """What a liquidation at ``mark`` takes beyond the loss: the maintenance margin."""
        return abs(self.position) * mark * self.maintenance_rate
