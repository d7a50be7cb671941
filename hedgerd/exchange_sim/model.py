"""The exchange simulator's data: instruments and engine settings, filters, the synthetic book,
the mid price model, orders, trades, positions and the events the engine reports.

Shared by the matching engine and every wire protocol; no behaviour beyond small helpers.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

from hedgerd.sim.market import gbm_step

MarketKind = Literal["spot", "usdm"]
SPOT: MarketKind = "spot"
USDM: MarketKind = "usdm"
KINDS: tuple[MarketKind, ...] = (SPOT, USDM)

ZERO = Decimal(0)
ONE = Decimal(1)
FEE_QUANTUM = Decimal("1e-8")
CLIENT_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ALLOWED_CLIENT_ID = set(CLIENT_ID_CHARS + ".:/_-")


def wall_ms() -> int:
    """Current wall-clock time in epoch milliseconds."""
    return int(time.time() * 1000)


class ApiError(Exception):
    """A request rejected the way Binance rejects it: error code, message and HTTP status."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class InstrumentConfig:
    """One symbol listed on both the spot and the USD-M market."""

    symbol: str
    base: str
    quote: str
    initial_price: Decimal
    volatility: float = 0.8
    spot_tick: Decimal = Decimal("0.01")
    spot_step: Decimal = Decimal("0.00001")
    spot_min_notional: Decimal = Decimal(5)
    usdm_tick: Decimal = Decimal("0.10")
    usdm_step: Decimal = Decimal("0.001")
    usdm_min_notional: Decimal = Decimal(100)
    level_qty: Decimal = Decimal("0.5")
    flow_mean_size: Decimal = Decimal("0.05")


def default_instruments() -> tuple[InstrumentConfig, ...]:
    """BTCUSDT and ETHUSDT with Binance-like filters."""
    return (
        InstrumentConfig(symbol="BTCUSDT", base="BTC", quote="USDT", initial_price=Decimal(60000),
                         volatility=0.8),
        InstrumentConfig(symbol="ETHUSDT", base="ETH", quote="USDT", initial_price=Decimal(3000),
                         volatility=0.9, spot_step=Decimal("0.0001"), usdm_tick=Decimal("0.01"),
                         usdm_min_notional=Decimal(20), level_qty=Decimal(8),
                         flow_mean_size=Decimal("0.5")),
    )


def _default_spot_balances() -> dict[str, Decimal]:
    return {"USDT": Decimal(1_000_000), "BTC": Decimal(10), "ETH": Decimal(100)}


@dataclass
class EngineConfig:
    """Parameters of the simulated exchange (all mutable before the engine is built)."""

    seed: int = 1
    instruments: tuple[InstrumentConfig, ...] = field(default_factory=default_instruments)
    spread_bps: Decimal = Decimal(2)
    level_gap_bps: Decimal = Decimal(1)
    book_levels: int = 20
    spot_maker_fee: Decimal = Decimal("0.001")
    spot_taker_fee: Decimal = Decimal("0.001")
    usdm_maker_fee: Decimal = Decimal("0.0002")
    usdm_taker_fee: Decimal = Decimal("0.0005")
    spot_balances: dict[str, Decimal] = field(default_factory=_default_spot_balances)
    usdm_wallet: Decimal = Decimal(1_000_000)
    default_leverage: int = 20
    max_leverage: int = 125
    flow_rate: float = 0.0
    #: The rest of the market's trade flow that fills resting orders (exchange_sim/resting.py):
    #: base units traded per second, mean volume queued at the touch ahead of an order joining it,
    #: chance per step of a sweep beyond the touch, and the mid's move against a filled order.
    market_volume: Decimal = Decimal(2)
    touch_depth: Decimal = Decimal(5)
    sweep_probability: float = 0.1
    adverse_selection_bps: Decimal = Decimal("0.5")
    flow_symbols: tuple[str, ...] = ("BTCUSDT",)
    duplicate_client_id_scope: Literal["open", "all"] = "open"
    #: Trades and final orders kept per market kind (oldest forgotten first; open orders are
    #: always kept). Clients only ask for what is newer than their cursor (a backfill reaches
    #: seconds to minutes back), so a bounded history serves them while a long soak's client
    #: flow cannot grow the simulator without limit.
    trade_history: int = 20_000
    order_history: int = 20_000


# --------------------------------------------------------------------------- market model


@dataclass(frozen=True)
class SymbolFilters:
    """Exchange filters of one symbol on one market kind."""

    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal
    max_price: Decimal
    min_notional: Decimal


@dataclass(frozen=True)
class BookLevel:
    price: Decimal
    qty: Decimal


@dataclass(frozen=True)
class Book:
    """A snapshot of the synthetic order book (bids descending, asks ascending)."""

    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    update_id: int

    @property
    def best_bid(self) -> BookLevel:
        return self.bids[0]

    @property
    def best_ask(self) -> BookLevel:
        return self.asks[0]


@dataclass
class PriceModel:
    """GBM mid price of one symbol plus its rolling session statistics."""

    mid: float
    volatility: float
    open: float
    high: float
    low: float
    update_id: int = 1

    def step(self, dt_seconds: float, rng: random.Random) -> None:
        """Advance the mid by ``dt_seconds`` of zero-drift GBM."""
        if dt_seconds <= 0:
            return
        drift, diffusion = gbm_step(self.volatility, dt_seconds)
        self.mid *= math.exp(drift + diffusion * rng.gauss(0.0, 1.0))
        self.high = max(self.high, self.mid)
        self.low = min(self.low, self.mid)
        self.update_id += 1

    def set(self, mid: float) -> None:
        self.mid = mid
        self.high = max(self.high, mid)
        self.low = min(self.low, mid)
        self.update_id += 1


def quantize_down(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of ``step`` not above ``value``."""
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def quantize_up(value: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of ``step`` not below ``value``."""
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def is_multiple(value: Decimal, step: Decimal) -> bool:
    return step == 0 or value % step == 0


# --------------------------------------------------------------------------- orders and trades


@dataclass
class Order:
    """One order of the account; mutated in place as it fills (snapshots go to listeners)."""

    kind: MarketKind
    symbol: str
    order_id: int
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    time: int
    update_time: int
    reduce_only: bool = False
    orig_quote_qty: Decimal = ZERO
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    is_client_flow: bool = False
    locked_asset: str | None = None
    locked_amount: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def avg_price(self) -> Decimal:
        if self.executed_qty == 0:
            return ZERO
        return self.cum_quote / self.executed_qty

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty


@dataclass(frozen=True)
class Trade:
    """One fill of the account (``is_client_flow``: a synthetic desk fill, not our order)."""

    kind: MarketKind
    symbol: str
    trade_id: int
    order_id: int
    client_order_id: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool
    realized_pnl: Decimal = ZERO
    is_client_flow: bool = False


@dataclass
class Position:
    """One-way USD-M position (``amount`` signed, base units)."""

    symbol: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    update_time: int = 0


@dataclass(frozen=True)
class OrderEvent:
    """An order changed: execution type NEW, TRADE, CANCELED or EXPIRED."""

    kind: MarketKind
    order: Order
    execution_type: str
    time: int
    trade: Trade | None = None


@dataclass(frozen=True)
class AccountEvent:
    """Balances (spot assets) or wallet and positions (usdm symbols) changed."""

    kind: MarketKind
    time: int
    assets: tuple[str, ...]
    symbols: tuple[str, ...] = ()
    reason: str = "ORDER"


UserEvent = OrderEvent | AccountEvent


@dataclass
class TickerStats:
    """Rolling statistics for the 24h ticker of one symbol on one market kind."""

    volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    count: int = 0
    first_id: int = -1
    last_id: int = -1
    last_qty: Decimal = ZERO


@dataclass
class BookFill:
    """One book level's share of an order walking the book."""

    price: Decimal
    qty: Decimal
