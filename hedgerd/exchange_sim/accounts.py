"""The simulated exchange's two accounts: spot balances and the USD-M wallet with its positions.

Spot: free and locked balance per asset; an order locks what it may spend, fills settle with
the fee in the received asset. USD-M: one-way positions with entry price, realized PnL,
leverage and margin type; fees and PnL settle in the USDT wallet. :class:`Accounts` is the part
of :class:`~hedgerd.exchange_sim.matching.MatchingEngine` that keeps them; the engine sets the state
declared here and provides the hooks.
"""

from __future__ import annotations

from abc import abstractmethod
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from hedgerd.exchange_sim.margin import liquidation_price, maintenance_margin
from hedgerd.exchange_sim.model import (
    FEE_QUANTUM,
    ONE,
    SPOT,
    USDM,
    ZERO,
    AccountEvent,
    ApiError,
    BookFill,
    EngineConfig,
    InstrumentConfig,
    MarketKind,
    Order,
    Position,
    Trade,
    UserEvent,
)


class Accounts:
    """Balances, positions, margin checks and settlement of fills."""

    config: EngineConfig
    instruments: dict[str, InstrumentConfig]
    usdm_wallet: Decimal
    _free: dict[str, Decimal]
    _locked: dict[str, Decimal]
    _positions: dict[str, Position]
    _leverage: dict[str, int]
    _margin_type: dict[str, str]

    # Hooks the engine provides (clock, instruments and prices, ids, resting orders, listeners).
    @abstractmethod
    def now(self) -> int: ...

    @abstractmethod
    def instrument(self, symbol: str) -> InstrumentConfig: ...

    @abstractmethod
    def mark_price(self, symbol: str) -> Decimal: ...

    @abstractmethod
    def _emit(self, event: UserEvent) -> None: ...

    @abstractmethod
    def _resting_orders(self, kind: MarketKind) -> list[Order]: ...

    @abstractmethod
    def _take_trade_id(self, kind: MarketKind) -> int: ...

    # ------------------------------------------------------------------ accounts

    def spot_balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Asset -> (free, locked)."""
        return {asset: (self._free[asset], self._locked.get(asset, ZERO)) for asset in self._free}

    def spot_balance(self, asset: str) -> tuple[Decimal, Decimal]:
        return self._free.get(asset, ZERO), self._locked.get(asset, ZERO)

    def set_spot_balance(self, asset: str, free: Decimal) -> None:
        """Overwrite the free balance of an asset (test setup)."""
        self._free[asset] = free
        self._locked.setdefault(asset, ZERO)
        self._emit(AccountEvent(kind=SPOT, time=self.now(), assets=(asset,), reason="DEPOSIT"))

    def positions(self) -> dict[str, Position]:
        """USD-M positions by symbol (flat ones included)."""
        return dict(self._positions)

    def position(self, symbol: str) -> Position:
        self.instrument(symbol)
        return self._positions[symbol]

    def leverage(self, symbol: str) -> int:
        self.instrument(symbol)
        return self._leverage[symbol]

    def margin_type(self, symbol: str) -> str:
        self.instrument(symbol)
        return self._margin_type[symbol]

    def set_leverage(self, symbol: str, leverage: int) -> int:
        """Change a symbol's leverage (1..max_leverage); ApiError -4028 otherwise."""
        self.instrument(symbol)
        if not 1 <= leverage <= self.config.max_leverage:
            raise ApiError(-4028, f"Leverage {leverage} is not valid")
        self._leverage[symbol] = leverage
        return leverage

    def set_margin_type(self, symbol: str, margin_type: str) -> None:
        self.instrument(symbol)
        wanted = margin_type.lower()
        if wanted not in ("cross", "crossed", "isolated"):
            raise ApiError(-1116, "Invalid marginType.")
        wanted = "cross" if wanted.startswith("cross") else "isolated"
        if self._margin_type[symbol] == wanted:
            raise ApiError(-4046, "No need to change margin type.")
        self._margin_type[symbol] = wanted

    def unrealized_pnl(self, symbol: str) -> Decimal:
        """Position amount times (mark - entry), USDT."""
        pos = self.position(symbol)
        if pos.amount == 0:
            return ZERO
        return pos.amount * (self.mark_price(symbol) - pos.entry_price)

    def maintenance_margin(self, symbol: str) -> Decimal:
        """The position's maintenance margin at the mark, by its bracket (:mod:`.margin`)."""
        return maintenance_margin(self.position(symbol).amount * self.mark_price(symbol))

    def isolated_margin(self, symbol: str) -> Decimal:
        """An isolated position's margin: its initial margin at entry (no transfers modelled)."""
        pos = self.position(symbol)
        if self._margin_type[symbol] != "isolated" or not pos.amount:
            return ZERO
        return abs(pos.amount) * pos.entry_price / self._leverage[symbol]

    def liquidation_price(self, symbol: str) -> Decimal:
        """Binance's liquidation price of the position (:mod:`.margin`); 0 when flat or none."""
        pos = self.position(symbol)
        if not pos.amount:
            return ZERO
        mark = self.mark_price(symbol)
        if self._margin_type[symbol] == "isolated":
            return liquidation_price(pos.amount, pos.entry_price, mark, self.isolated_margin(symbol))
        cross = [s for s in self.instruments if s != symbol and self._margin_type[s] != "isolated"]
        wallet = self.usdm_wallet - sum((self.isolated_margin(s) for s in self.instruments), ZERO)
        return liquidation_price(pos.amount, pos.entry_price, mark, wallet,
                                 sum((self.maintenance_margin(s) for s in cross), ZERO),
                                 sum((self.unrealized_pnl(s) for s in cross), ZERO))

    def position_initial_margin(self, symbol: str) -> Decimal:
        pos = self.position(symbol)
        return abs(pos.amount) * self.mark_price(symbol) / self._leverage[symbol]

    def open_order_initial_margin(self, symbol: str | None = None) -> Decimal:
        total = ZERO
        for order in self._resting_orders(USDM):
            if symbol is None or order.symbol == symbol:
                total += order.remaining * order.price / self._leverage[order.symbol]
        return total

    def usdm_totals(self) -> dict[str, Decimal]:
        """Wallet, unrealized PnL, margins and available balance of the USD-M account."""
        upnl = sum((self.unrealized_pnl(s) for s in self.instruments), ZERO)
        pim = sum((self.position_initial_margin(s) for s in self.instruments), ZERO)
        oim = self.open_order_initial_margin()
        maint = sum((self.maintenance_margin(s) for s in self._positions), ZERO)
        available = self.usdm_wallet + upnl - pim - oim
        return {
            "wallet": self.usdm_wallet,
            "unrealized": upnl,
            "margin_balance": self.usdm_wallet + upnl,
            "position_im": pim,
            "open_order_im": oim,
            "initial_margin": pim + oim,
            "maint_margin": maint,
            "available": available,
        }

    def _check_spot_funds(self, inst: InstrumentConfig, side: str, fills: list[BookFill],
                          resting_qty: Decimal, price: Decimal | None) -> None:
        if side == "BUY":
            need = sum((f.price * f.qty for f in fills), ZERO)
            if resting_qty > 0 and price is not None:
                need += resting_qty * price
            have = self._free[inst.quote]
        else:
            need = sum((f.qty for f in fills), ZERO) + resting_qty
            have = self._free[inst.base]
        if need > have:
            raise ApiError(-2010, "Account has insufficient balance for requested action.")

    def _check_margin(self, symbol: str, side: str, fills: list[BookFill], resting_qty: Decimal,
                      price: Decimal | None) -> None:
        pos = self._positions[symbol]
        sign = ONE if side == "BUY" else -ONE
        filled = sum((f.qty for f in fills), ZERO)
        new_abs = abs(pos.amount + sign * filled)
        leverage = Decimal(self._leverage[symbol])
        mark = self.mark_price(symbol)
        extra = max(ZERO, new_abs - abs(pos.amount)) * mark / leverage
        if resting_qty > 0 and price is not None:
            extra += resting_qty * price / leverage
        fee = sum((f.price * f.qty for f in fills), ZERO) * self.config.usdm_taker_fee
        if extra > 0 and extra + fee > self.usdm_totals()["available"]:
            raise ApiError(-2019, "Margin is insufficient.")

    def _lock_for(self, order: Order) -> None:
        inst = self.instruments[order.symbol]
        if order.side == "BUY":
            asset, amount = inst.quote, order.remaining * order.price
        else:
            asset, amount = inst.base, order.remaining
        self._free[asset] -= amount
        self._locked[asset] += amount
        order.locked_asset = asset
        order.locked_amount = amount
        self._emit(AccountEvent(kind=SPOT, time=order.update_time, assets=(asset,)))

    def _unlock(self, order: Order) -> None:
        if order.kind != SPOT or order.locked_asset is None or order.locked_amount == 0:
            return
        asset = order.locked_asset
        self._free[asset] += order.locked_amount
        self._locked[asset] -= order.locked_amount
        order.locked_amount = ZERO
        self._emit(AccountEvent(kind=SPOT, time=self.now(), assets=(asset,)))

    def _settle_spot(self, order: Order, price: Decimal, qty: Decimal, is_maker: bool, now: int) -> Trade:
        inst = self.instruments[order.symbol]
        rate = self.config.spot_maker_fee if is_maker else self.config.spot_taker_fee
        quote_qty = price * qty
        locked_use = ZERO
        if order.locked_asset is not None:
            locked_use = quote_qty if order.side == "BUY" else qty
            locked_use = min(locked_use, order.locked_amount)
            order.locked_amount -= locked_use
            self._locked[order.locked_asset] -= locked_use
            self._free[order.locked_asset] += locked_use
        if order.side == "BUY":
            commission = (qty * rate).quantize(FEE_QUANTUM, rounding=ROUND_HALF_EVEN)
            commission_asset = inst.base
            self._free[inst.quote] -= quote_qty
            self._free[inst.base] += qty - commission
        else:
            commission = (quote_qty * rate).quantize(FEE_QUANTUM, rounding=ROUND_HALF_EVEN)
            commission_asset = inst.quote
            self._free[inst.base] -= qty
            self._free[inst.quote] += quote_qty - commission
        return Trade(kind=SPOT, symbol=order.symbol, trade_id=self._take_trade_id(SPOT),
                     order_id=order.order_id, client_order_id=order.client_order_id, side=order.side,
                     price=price, qty=qty, quote_qty=quote_qty, commission=commission,
                     commission_asset=commission_asset, time=now, is_maker=is_maker,
                     is_client_flow=order.is_client_flow)

    def _settle_usdm(self, order: Order, price: Decimal, qty: Decimal, is_maker: bool, now: int) -> Trade:
        inst = self.instruments[order.symbol]
        rate = self.config.usdm_maker_fee if is_maker else self.config.usdm_taker_fee
        quote_qty = price * qty
        commission = (quote_qty * rate).quantize(FEE_QUANTUM, rounding=ROUND_HALF_EVEN)
        pos = self._positions[order.symbol]
        signed = qty if order.side == "BUY" else -qty
        realized = ZERO
        if pos.amount == 0 or (pos.amount > 0) == (signed > 0):
            total = abs(pos.amount) + qty
            pos.entry_price = (abs(pos.amount) * pos.entry_price + qty * price) / total
            pos.amount += signed
        else:
            closed = min(qty, abs(pos.amount))
            direction = ONE if pos.amount > 0 else -ONE
            realized = closed * (price - pos.entry_price) * direction
            pos.amount += signed
            if pos.amount == 0:
                pos.entry_price = ZERO
            elif (pos.amount > 0) == (signed > 0):
                pos.entry_price = price
        pos.entry_price = pos.entry_price.quantize(Decimal("1e-8"), rounding=ROUND_DOWN) \
            if pos.entry_price else ZERO
        pos.realized_pnl += realized
        pos.update_time = now
        self.usdm_wallet += realized - commission
        return Trade(kind=USDM, symbol=order.symbol, trade_id=self._take_trade_id(USDM),
                     order_id=order.order_id, client_order_id=order.client_order_id, side=order.side,
                     price=price, qty=qty, quote_qty=quote_qty, commission=commission,
                     commission_asset=inst.quote, time=now, is_maker=is_maker, realized_pnl=realized,
                     is_client_flow=order.is_client_flow)
