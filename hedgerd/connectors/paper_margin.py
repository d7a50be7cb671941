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

An inverse perpetual (``inverse_size`` set: the contract's USD size) keeps the same account in
the coin, as Deribit does: a position of ``usd`` = contracts x size is tracked as ``-usd`` units of
an asset priced ``1 / price`` (its PnL in coin is ``usd x (1/entry - 1/exit)``), the maintenance
margin is ``|usd| / mark x rate`` and the liquidation price is
:func:`hedgerd.risk.liquidation.inverse_liquidation_price`. Positions and fills are in contracts.

Left out: margin tiers above the first, leverage and initial margin (orders are never refused
for margin), isolated margin, funding, auto-deleveraging.
"""

from __future__ import annotations

from decimal import Decimal

from hedgerd.models import PositionRisk
from hedgerd.risk.liquidation import (
    inverse_liquidation_price,
    inverse_margin_ratio,
    linear_liquidation_price,
    margin_ratio,
)
from hedgerd.risk.realized import AverageCost, average_fill


class PaperMargin:
    """The wallet and position of the paper perpetual (see the module docstring)."""

    def __init__(self, balance: Decimal, maintenance_rate: Decimal, *, inverse_size: Decimal | None = None) -> None:
        self.maintenance_rate = maintenance_rate
        self._start = balance
        self._fees = Decimal(0)
        self._cost = AverageCost()
        self._inverse_size = inverse_size

    @property
    def wallet(self) -> Decimal:
        return self._start + self._cost.realized - self._fees

    @property
    def position(self) -> Decimal:
        """The position in contracts (base units on a linear perpetual)."""
        if self._inverse_size is None:
            return self._cost.position
        return -self._cost.position / self._inverse_size

    @property
    def entry(self) -> Decimal | None:
        """The position's average entry price (None when flat)."""
        price = self._cost.price
        if price is None or self._inverse_size is None:
            return price
        return 1 / price

    def _tracked(self, signed: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """``signed`` contracts at ``price`` as the account tracks them (module docstring)."""
        if self._inverse_size is None:
            return signed, price
        return -signed * self._inverse_size, 1 / price

    def fill(self, signed: Decimal, price: Decimal, settle_fee: Decimal) -> None:
        """A trade of ``signed`` contracts at ``price`` with a fee in the settle currency."""
        self._cost = average_fill(self._cost, *self._tracked(signed, price))
        self._fees += settle_fee

    def seed(self, position: Decimal, mark: Decimal) -> None:
        """Set the position without trading (a restart aligned with the ledger), entered at ``mark``."""
        units, price = self._tracked(position, mark)
        self._cost = AverageCost(units, units * price, self._cost.realized)

    def liquidation_price(self) -> Decimal | None:
        entry = self.entry
        if entry is None:
            return None
        if self._inverse_size is None:
            return linear_liquidation_price(self.position, entry, self.wallet, self.maintenance_rate)
        return inverse_liquidation_price(self.position * self._inverse_size, entry, self.wallet,
                                         self.maintenance_rate)

    def risk(self, venue: str, symbol: str, mark: Decimal, ts: float) -> PositionRisk | None:
        """The position's margin at ``mark``; None when flat."""
        entry = self.entry
        if entry is None:
            return None
        if self._inverse_size is None:
            ratio = margin_ratio(self.position, entry, mark, self.wallet, self.maintenance_rate)
        else:
            ratio = inverse_margin_ratio(self.position * self._inverse_size, entry, mark, self.wallet,
                                         self.maintenance_rate)
        return PositionRisk(venue=venue, symbol=symbol, position=self.position, mark=mark,
                            liquidation_price=self.liquidation_price(), margin_ratio=ratio, ts=ts)

    def liquidates_at(self, mark: Decimal) -> bool:
        """Whether ``mark`` has reached the liquidation price."""
        price = self.liquidation_price()
        if price is None or price <= 0:
            return False
        return mark <= price if self.position > 0 else mark >= price

    def clearance_fee(self, mark: Decimal) -> Decimal:
        """What a liquidation at ``mark`` takes beyond the loss: the maintenance margin (in the
        settle currency)."""
        if self._inverse_size is None:
            return abs(self.position) * mark * self.maintenance_rate
        return abs(self.position) * self._inverse_size / mark * self.maintenance_rate
