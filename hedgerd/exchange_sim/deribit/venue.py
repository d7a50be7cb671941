"""The Deribit account: orders, fills, inverse futures and coin-settled option positions, margin.

Pure state: no I/O. Prices come from the shared :class:`~hedgerd.exchange_sim.matching.MatchingEngine`
(its ``{BASE}USDT`` mid is Deribit's index), the clock from the engine too. The book of each
instrument is synthetic around its mark (:meth:`DeribitVenue.book`); orders walk it and limit
orders rest, filling as makers from the market's trade flow, behind the queue at their price, only
when it trades through them (:mod:`.resting`, docs/passive.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from hedgerd.exchange_sim.deribit.instruments import (
    BTC_SPEC,
    ETH_SPEC,
    FUTURE_MAKER_FEE,
    FUTURE_TAKER_FEE,
    OPTION_FEE,
    OPTION_FEE_CAP,
    CurrencySpec,
    Instrument,
    OptionMark,
    catalogue,
    forward,
    option_mark,
)
from hedgerd.exchange_sim.deribit.resting import DeribitResting
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import ZERO, quantize_down, quantize_up
from hedgerd.sim.funding import FUNDING_PERIOD_SECONDS, deribit_rate_8h, step_premium

COIN = Decimal("1e-10")
FUTURE_IM = Decimal("0.02")  # initial margin of futures, fraction of the coin notional (50x)
FUTURE_MM = Decimal("0.01")
SHORT_OPTION_IM = Decimal("0.15")  # short option: max(0.15 - OTM/underlying, 0.1) + mark
SHORT_OPTION_IM_FLOOR = Decimal("0.1")
SHORT_OPTION_MM = Decimal("0.075")
OPTION_DELIVERY_FEE = Decimal("0.00015")  # of the underlying amount, capped like the trading fee
LABEL_MAX = 64


class DeribitError(Exception):
    """A request rejected the way Deribit rejects it: JSON-RPC error code, message, data."""

    def __init__(self, code: int, message: str, data: dict[str, object] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


def invalid_param(param: str, reason: str) -> DeribitError:
    return DeribitError(-32602, "Invalid params", {"param": param, "reason": reason})


@dataclass
class DOrder:
    """One order of the account (``amount`` in USD for futures, in coin for options)."""

    order_id: str
    instrument: Instrument
    direction: str
    order_type: str
    amount: Decimal
    price: Decimal | None
    label: str
    time_in_force: str
    post_only: bool
    reject_post_only: bool
    reduce_only: bool
    created: int
    updated: int
    filled: Decimal = ZERO
    filled_value: Decimal = ZERO  # sum of price * amount (coin prices for options)
    filled_coin: Decimal = ZERO  # sum of amount / price (inverse futures: for the average)
    commission: Decimal = ZERO
    state: str = "open"
    cancel_reason: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled

    @property
    def average(self) -> Decimal:
        if self.filled == 0:
            return ZERO
        if self.instrument.is_option:
            return self.filled_value / self.filled
        return self.filled / self.filled_coin


@dataclass(frozen=True)
class DTrade:
    """One fill of the account."""

    trade_id: str
    trade_seq: int
    order: DOrder
    amount: Decimal
    price: Decimal
    fee: Decimal
    maker: bool
    timestamp: int
    index_price: Decimal
    mark_price: Decimal
    profit_loss: Decimal
    iv: float | None = None
    underlying: float | None = None


@dataclass
class DPosition:
    """Signed size (USD for futures, coin for options), average price, realized PnL in coin."""

    size: Decimal = ZERO
    average: Decimal = ZERO
    realized: Decimal = ZERO
    funding: Decimal = ZERO  # funding received (negative: paid) since the position opened


def _default_balances() -> dict[str, Decimal]:
    return {"BTC": Decimal(100), "ETH": Decimal(1000)}


@dataclass
class DeribitConfig:
    """Parameters of the Deribit account and books."""

    balances: dict[str, Decimal] = field(default_factory=_default_balances)
    future_level_usd: dict[str, Decimal] = field(
        default_factory=lambda: {"BTC": Decimal(200_000), "ETH": Decimal(50_000)})
    option_level_coin: dict[str, Decimal] = field(
        default_factory=lambda: {"BTC": Decimal(5), "ETH": Decimal(50)})
    book_levels: int = 10
    future_half_spread_bps: Decimal = Decimal(1)
    option_half_spread: Decimal = Decimal("0.03")  # fraction of the option's mark
    trade_history: int = 20_000
    settlement_interval: float = 86_400.0  # seconds between session settlements (08:00 UTC daily)


class DeribitVenue:
    """Deribit's instruments, books, orders, trades, positions and account summaries."""

    def __init__(self, engine: MatchingEngine, config: DeribitConfig | None = None) -> None:
        self.engine = engine
        self.config = config or DeribitConfig()
        self.specs: dict[str, CurrencySpec] = {
            s.currency: s for s in (BTC_SPEC, ETH_SPEC) if f"{s.currency}USDT" in engine.instruments}
        now = engine.now()
        self.instruments: dict[str, Instrument] = {}
        for cur, spec in self.specs.items():
            for inst in catalogue(spec, self.index(cur), now):
                self.instruments[inst.name] = inst
        self.balances = {c: self.config.balances.get(c, ZERO) for c in self.specs}
        self.positions: dict[str, DPosition] = {}
        self.orders: dict[str, DOrder] = {}
        self.trades: list[DTrade] = []
        self._next_order = 1
        self._next_trade = 1
        self._rng = random.Random(engine.config.seed + 4241)
        self.premium: dict[str, float] = dict.fromkeys(self.specs, 0.0)
        #: perpetual -> funding received in coin since the start (negative: paid), for the settlements
        self.funding_received: dict[str, Decimal] = {}
        self._funded_at = now
        #: expired instrument -> its delivery price (USD)
        self.delivered: dict[str, Decimal] = {}
        #: called with every order change and every fill (the websocket's user channels)
        self.listeners: list[Callable[[DOrder | DTrade], None]] = []
        #: queue positions and trade flow of the resting orders
        self.resting = DeribitResting(self)

    # ------------------------------------------------------------------ market

    def instrument(self, name: str) -> Instrument:
        inst = self.instruments.get(name)
        if inst is None:
            raise invalid_param("instrument_name", "wrong format")
        return inst

    def currency(self, currency: str | None) -> str:
        cur = (currency or "").upper()
        if cur not in self.specs:
            raise invalid_param("currency", "wrong format")
        return cur

    def index(self, currency: str) -> Decimal:
        return self.engine.mark_price(f"{currency}USDT")

    def option(self, inst: Instrument) -> OptionMark:
        return option_mark(self.specs[inst.currency], inst, float(self.index(inst.currency)),
                           self.engine.now())

    def mark(self, inst: Instrument) -> Decimal:
        """Futures: the fair price rounded to the tick (USD); options: the price in coin."""
        if inst.is_option:
            return Decimal(repr(self.option(inst).price)).quantize(COIN)
        fair = Decimal(repr(forward(inst, float(self.index(inst.currency)), self.engine.now(),
                                    self.premium[inst.currency])))
        return quantize_down(fair, inst.tick_size)

    def book(self, inst: Instrument) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids, asks) of (price, amount) around the mark; options bid no lower than one tick."""
        mark = self.mark(inst)
        cfg = self.config
        if inst.is_option:
            half = max(mark * cfg.option_half_spread, inst.tick_at(mark))
            size = cfg.option_level_coin[inst.currency]
        else:
            half = max(mark * cfg.future_half_spread_bps / Decimal(10_000), inst.tick_size)
            size = cfg.future_level_usd[inst.currency]
        bids: list[tuple[Decimal, Decimal]] = []
        asks: list[tuple[Decimal, Decimal]] = []
        for level in range(cfg.book_levels):
            bid = mark - half * (1 + 2 * level)
            ask = mark + half * (1 + 2 * level)
            bid = quantize_down(bid, inst.tick_at(bid))
            ask = quantize_up(ask, inst.tick_at(ask))
            if bid >= inst.tick_size:
                bids.append((bid, size))
            asks.append((ask, size))
        return bids, asks

    # ------------------------------------------------------------------ orders

    def place(self, direction: str, name: str, amount: Decimal, order_type: str,
              price: Decimal | None, *, label: str = "", time_in_force: str = "good_til_cancelled",
              post_only: bool = False, reject_post_only: bool = False,
              reduce_only: bool = False) -> tuple[DOrder, list[DTrade]]:
        """``private/buy`` / ``private/sell``: validate, walk the book, rest or expire the rest."""
        inst = self.instrument(name)
        if name in self.delivered:
            raise DeribitError(10020, "invalid_or_unsupported_instrument")  # expired
        if order_type not in ("limit", "market"):
            raise invalid_param("type", "unsupported order type")
        if time_in_force not in ("good_til_cancelled", "immediate_or_cancel", "fill_or_kill"):
            raise invalid_param("time_in_force", "wrong format")
        if len(label) > LABEL_MAX:
            raise invalid_param("label", "too long")
        if amount <= 0 or amount % inst.min_trade_amount != 0:
            if 0 < amount < inst.min_trade_amount:
                raise DeribitError(10002, "qty_too_low")
            reason = "must be a multiple of contract size" if not inst.is_option else \
                "must be a multiple of min_trade_amount"
            raise invalid_param("amount", reason)
        if order_type == "limit":
            if price is None or price <= 0:
                raise invalid_param("price", "must be positive")
            if price % inst.tick_at(price) != 0:
                raise invalid_param("price", "must conform to tick size")
        else:
            price = None
        bids, asks = self.book(inst)
        levels = asks if direction == "buy" else bids
        if post_only and price is not None:
            crosses = bool(levels) and (price >= levels[0][0] if direction == "buy" else price <= levels[0][0])
            if crosses:
                if reject_post_only:
                    raise DeribitError(11054, "post_only_reject")
                # Without reject_post_only Deribit reprices a crossing post-only order to one
                # tick short of the opposite touch, so it rests as a maker.
                touch = levels[0][0]
                price = touch - inst.tick_at(touch) if direction == "buy" else touch + inst.tick_at(touch)
        if reduce_only:
            pos = self.positions.get(name, DPosition())
            reducing = (pos.size > 0 and direction == "sell") or (pos.size < 0 and direction == "buy")
            amount = min(amount, abs(pos.size)) if reducing else ZERO
            if amount == 0:
                raise DeribitError(11030, "other_reject", {"reason": "reduce_only"})
        fills: list[tuple[Decimal, Decimal]] = []
        left = amount
        if not (post_only and price is not None):
            for level_price, size in levels:
                if price is not None and (level_price > price if direction == "buy" else level_price < price):
                    break
                take = min(size, left)
                fills.append((level_price, take))
                left -= take
                if left == 0:
                    break
        if time_in_force == "fill_or_kill" and left > 0:
            fills, left = [], amount
        rests = order_type == "limit" and time_in_force == "good_til_cancelled"
        self._check_funds(inst, direction, fills, left if rests else ZERO, price)
        now = self.engine.now()
        order = DOrder(order_id=self._order_id(inst.currency), instrument=inst, direction=direction,
                       order_type=order_type, amount=amount, price=price, label=label,
                       time_in_force=time_in_force, post_only=post_only,
                       reject_post_only=reject_post_only, reduce_only=reduce_only, created=now,
                       updated=now)
        self.orders[order.order_id] = order
        trades = [self._execute(order, p, q, maker=False, now=now) for p, q in fills]
        if order.remaining > 0 and not rests:
            order.state = "cancelled"
            order.cancel_reason = "user_request" if order.filled else "immediate_or_cancel"
        if order.state == "open":
            self.resting.join(order)
        self._notify(order)
        return order, trades

    def client_fill(self, name: str, direction: str, amount: Decimal) -> DTrade | None:
        """A desk client trades with the account as maker at the touch: ``direction`` is the
        account's side (it buys at the bid, sells at the ask). None when the amount rounds to
        nothing or the account lacks the margin for it."""
        inst = self.instrument(name)
        amount = quantize_down(amount, inst.min_trade_amount)
        bids, asks = self.book(inst)
        levels = bids if direction == "buy" else asks
        if amount <= 0 or not levels:
            return None
        price = levels[0][0]
        try:
            self._check_funds(inst, direction, [(price, amount)], ZERO, None)
        except DeribitError:
            return None
        now = self.engine.now()
        order = DOrder(order_id=self._order_id(inst.currency), instrument=inst, direction=direction,
                       order_type="limit", amount=amount, price=price, label="client-flow",
                       time_in_force="good_til_cancelled", post_only=True, reject_post_only=False,
                       reduce_only=False, created=now, updated=now)
        self.orders[order.order_id] = order
        trade = self._execute(order, price, amount, maker=True, now=now)
        self._notify(order)
        return trade

    def cancel(self, order_id: str) -> DOrder:
        order = self.orders.get(order_id)
        if order is None:
            raise DeribitError(10004, "order_not_found")
        if order.state != "open":
            raise DeribitError(11044, "not_open_order")
        order.state = "cancelled"
        order.cancel_reason = "user_request"
        order.updated = self.engine.now()
        self._notify(order)
        return order

    def by_label(self, currency: str, label: str) -> list[DOrder]:
        """Orders carrying ``label`` (Deribit does not make labels unique)."""
        return [o for o in self.orders.values() if o.label == label and o.instrument.currency == currency]

    def open_orders(self, currency: str | None = None, name: str | None = None) -> list[DOrder]:
        return [o for o in self.orders.values() if o.state == "open"
                and (currency is None or o.instrument.currency == currency)
                and (name is None or o.instrument.name == name)]

    def user_trades(self, currency: str | None = None, name: str | None = None,
                    start_ms: int | None = None) -> list[DTrade]:
        return [t for t in self.trades
                if (currency is None or t.order.instrument.currency == currency)
                and (name is None or t.order.instrument.name == name)
                and (start_ms is None or t.timestamp >= start_ms)]

    def funding_rate(self, currency: str) -> float:
        """The perpetual's current funding rate per 8 h."""
        return deribit_rate_8h(self.premium[currency])

    def accrue_funding(self, now: int) -> None:
        """Pay or receive the perpetual's funding since the last call, then step the premium."""
        dt = (now - self._funded_at) / 1000.0
        if dt <= 0:
            return
        self._funded_at = now
        for cur in self.specs:
            perp = self.instruments[f"{cur}-PERPETUAL"]
            pos = self.positions.get(perp.name)
            if pos is not None and pos.size != 0:
                rate = Decimal(repr(self.funding_rate(cur) * dt / FUNDING_PERIOD_SECONDS))
                paid = (pos.size / self.mark(perp) * rate).quantize(COIN)  # longs pay a positive rate
                pos.funding -= paid
                self.balances[cur] -= paid
                self.funding_received[perp.name] = self.funding_received.get(perp.name, ZERO) - paid
            self.premium[cur] = step_premium(self.premium[cur], dt, self._rng)

    def settle_expired(self, now: int) -> list[str]:
        """Deliver every instrument past its expiry at the index: cancel its open orders, pay
        futures' inverse PnL and options' intrinsic value in coin (less the option delivery
        fee), close the positions. Returns the delivered instrument names."""
        delivered: list[str] = []
        for name, inst in self.instruments.items():
            if inst.is_perpetual or name in self.delivered or inst.expiry_ms > now:
                continue
            price = self.index(inst.currency)
            self.delivered[name] = price
            delivered.append(name)
            for order in self.open_orders(name=name):
                order.state = "cancelled"
                order.cancel_reason = "settlement"
                order.updated = now
                self._notify(order)
            pos = self.positions.get(name)
            if pos is None or pos.size == 0:
                continue
            if inst.is_option:
                strike = inst.strike or ZERO
                intrinsic = max(ZERO, price - strike if inst.option_type == "call" else strike - price)
                value = intrinsic / price  # coin per coin of underlying
                fee = min(OPTION_DELIVERY_FEE * abs(pos.size), OPTION_FEE_CAP * value * abs(pos.size)) \
                    if value > 0 else ZERO
                self.balances[inst.currency] += (pos.size * value - fee).quantize(COIN)
                pos.realized += (pos.size * (value - pos.average)).quantize(COIN)
            else:
                pnl = (pos.size * (1 / pos.average - 1 / price)).quantize(COIN)
                self.balances[inst.currency] += pnl
                pos.realized += pnl
            pos.size = ZERO
            pos.average = ZERO
        return delivered

    def tick(self) -> list[DTrade]:
        """Deliver expired instruments, accrue funding, then fill resting limit orders (as makers
        at their price) from the trade flow since the previous tick (:mod:`.resting`)."""
        now = self.engine.now()
        self.settle_expired(now)
        self.accrue_funding(now)
        return self.resting.match(now)

    # ------------------------------------------------------------------ account

    def position_delta(self, inst: Instrument, pos: DPosition) -> Decimal:
        """Coin delta: futures size over the mark; options size times the coin-settled delta."""
        if inst.is_option:
            return (pos.size * Decimal(repr(self.option(inst).coin_delta))).quantize(COIN)
        return (pos.size / self.mark(inst)).quantize(COIN)

    def floating_pnl(self, inst: Instrument, pos: DPosition) -> Decimal:
        if pos.size == 0:
            return ZERO
        mark = self.mark(inst)
        if inst.is_option:
            return pos.size * (mark - pos.average)
        return pos.size * (1 / pos.average - 1 / mark)

    def margins(self, inst: Instrument, size: Decimal) -> tuple[Decimal, Decimal]:
        """(initial, maintenance) margin in coin of a position of ``size``."""
        if size == 0:
            return ZERO, ZERO
        if not inst.is_option:
            coin = abs(size) / self.mark(inst)
            return coin * FUTURE_IM, coin * FUTURE_MM
        if size > 0:
            return ZERO, ZERO
        mark = self.mark(inst)
        index = self.index(inst.currency)
        strike = inst.strike or ZERO
        otm = max(ZERO, (strike - index) if inst.option_type == "call" else (index - strike)) / index
        im = max(SHORT_OPTION_IM - otm, SHORT_OPTION_IM_FLOOR) + mark
        return abs(size) * im, abs(size) * (SHORT_OPTION_MM + mark)

    def summary(self, currency: str) -> dict[str, Decimal]:
        """equity, balance, margins, available funds and the delta/greek totals of one currency."""
        balance = self.balances[currency]
        futures_pl = options_value = options_pl = im = mm = ZERO
        delta_total = options_delta = ZERO
        gamma = vega = theta = 0.0
        for name, pos in self.positions.items():
            inst = self.instruments[name]
            if inst.currency != currency or pos.size == 0:
                continue
            pos_im, pos_mm = self.margins(inst, pos.size)
            im += pos_im
            mm += pos_mm
            delta = self.position_delta(inst, pos)
            delta_total += delta
            if inst.is_option:
                options_value += pos.size * self.mark(inst)
                options_pl += self.floating_pnl(inst, pos)
                options_delta += delta
                greeks = self.option(inst).greeks
                gamma += float(pos.size) * greeks.gamma
                vega += float(pos.size) * greeks.vega / 100
                theta += float(pos.size) * greeks.theta / 365
            else:
                futures_pl += self.floating_pnl(inst, pos)
        im += self._open_orders_margin(currency)
        equity = balance + futures_pl + options_value
        return {
            "balance": balance, "equity": equity, "margin_balance": equity,
            "initial_margin": im, "maintenance_margin": mm, "available_funds": equity - im,
            "available_withdrawal_funds": max(ZERO, min(balance, equity - im)),
            "futures_pl": futures_pl, "futures_session_upl": futures_pl, "options_pl": options_pl,
            "options_session_upl": options_pl, "options_value": options_value,
            "delta_total": delta_total, "options_delta": options_delta,
            "options_gamma": Decimal(repr(gamma)).quantize(COIN),
            "options_vega": Decimal(repr(vega)).quantize(COIN),
            "options_theta": Decimal(repr(theta)).quantize(COIN),
        }

    # ------------------------------------------------------------------ internals

    def _notify(self, event: DOrder | DTrade) -> None:
        for listener in self.listeners:
            listener(event)

    def _order_id(self, currency: str) -> str:
        value = self._next_order
        self._next_order += 1
        return str(value) if currency == "BTC" else f"{currency}-{value}"

    def _open_orders_margin(self, currency: str) -> Decimal:
        total = ZERO
        for order in self.open_orders(currency):
            total += self._order_margin(order.instrument, order.direction, order.remaining, order.price)
        return total

    def _order_margin(self, inst: Instrument, direction: str, amount: Decimal, price: Decimal | None) -> Decimal:
        if amount == 0 or price is None:
            return ZERO
        if not inst.is_option:
            return amount / price * FUTURE_IM
        if direction == "buy":
            return amount * price
        return self.margins(inst, -amount)[0]

    def _check_funds(self, inst: Instrument, direction: str, fills: list[tuple[Decimal, Decimal]],
                     resting: Decimal, price: Decimal | None) -> None:
        """Not enough funds (10009) when the order would take initial margin past equity."""
        pos = self.positions.get(inst.name, DPosition())
        sign = 1 if direction == "buy" else -1
        filled = sum((q for _, q in fills), ZERO)
        new_size = pos.size + sign * filled
        before = self.summary(inst.currency)
        im_change = self.margins(inst, new_size)[0] - self.margins(inst, pos.size)[0]
        cash = ZERO
        for p, q in fills:
            cash += self._fee(inst, p, q, maker=False)
            if inst.is_option:
                cash += sign * p * q  # premium paid (received when negative)
        im_change += self._order_margin(inst, direction, resting, price)
        if im_change + cash > 0 and im_change + cash > before["available_funds"]:
            raise DeribitError(10009, "not_enough_funds")

    def _fee(self, inst: Instrument, price: Decimal, amount: Decimal, *, maker: bool) -> Decimal:
        if inst.is_option:
            fee = min(OPTION_FEE * amount, OPTION_FEE_CAP * price * amount)
        else:
            fee = (FUTURE_MAKER_FEE if maker else FUTURE_TAKER_FEE) * amount / price
        return fee.quantize(COIN, rounding=ROUND_HALF_EVEN)

    def _execute(self, order: DOrder, price: Decimal, amount: Decimal, *, maker: bool, now: int) -> DTrade:
        inst = order.instrument
        pos = self.positions.setdefault(inst.name, DPosition())
        signed = amount if order.direction == "buy" else -amount
        fee = self._fee(inst, price, amount, maker=maker)
        realized = ZERO
        if pos.size == 0 or (pos.size > 0) == (signed > 0):
            if inst.is_option:
                pos.average = (abs(pos.size) * pos.average + amount * price) / (abs(pos.size) + amount)
            else:
                coins = (abs(pos.size) / pos.average if pos.size else ZERO) + amount / price
                pos.average = (abs(pos.size) + amount) / coins
            pos.size += signed
        else:
            closed = min(amount, abs(pos.size))
            direction = 1 if pos.size > 0 else -1
            if inst.is_option:
                realized = direction * closed * (price - pos.average)
            else:
                realized = direction * closed * (1 / pos.average - 1 / price)
            pos.size += signed
            if pos.size == 0:
                pos.average = ZERO
            elif (pos.size > 0) == (signed > 0):
                pos.average = price
        realized = realized.quantize(COIN)
        pos.realized += realized
        cur = inst.currency
        if inst.is_option:
            # Premium moves cash at once; the option's value is carried in equity at its mark.
            self.balances[cur] -= signed * price
        else:
            self.balances[cur] += realized
        self.balances[cur] -= fee
        order.filled += amount
        order.filled_value += price * amount
        if not inst.is_option:
            order.filled_coin += amount / price
        order.commission += fee
        order.updated = now
        if order.filled == order.amount:
            order.state = "filled"
        mark = self.mark(inst)
        opt = self.option(inst) if inst.is_option else None
        trade = DTrade(trade_id=f"{cur}-{self._next_trade}", trade_seq=self._next_trade, order=order,
                       amount=amount, price=price, fee=fee, maker=maker, timestamp=now,
                       index_price=self.index(cur), mark_price=mark, profit_loss=realized,
                       iv=opt.iv if opt else None, underlying=opt.underlying if opt else None)
        self._next_trade += 1
        self.trades.append(trade)
        self._notify(trade)
        if len(self.trades) > self.config.trade_history:
            del self.trades[: len(self.trades) - self.config.trade_history]
        return trade
