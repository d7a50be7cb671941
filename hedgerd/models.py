"""Domain types shared by every stage of the pipeline.

Every amount and price is a :class:`~decimal.Decimal`. Amounts on fills and orders are
always positive; the direction is carried by :class:`Side`. Signed quantities (positions,
net delta) are positive for long exposure.

Symbols follow ccxt's unified notation: ``BTC/USDT`` for spot, ``BTC/USDT:USDT`` for a
linear perpetual settled in USDT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import IntEnum, StrEnum

from hedgerd.instruments import Instrument

ZERO = Decimal(0)


class Side(StrEnum):
    """Order or fill direction."""

    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for buy, -1 for sell."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def for_delta(cls, signed_amount: Decimal) -> Side:
        """The side that moves a position by ``signed_amount`` (positive -> buy)."""
        return cls.BUY if signed_amount > 0 else cls.SELL


def split_symbol(symbol: str) -> tuple[str, str, str | None]:
    """Split a ccxt unified symbol into (base, quote, settle); settle is None for spot."""
    pair, _, settle = symbol.partition(":")
    base, sep, quote = pair.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"not a unified symbol: {symbol!r}")
    return base, quote, settle or None


def is_derivative(symbol: str) -> bool:
    """True for ccxt derivative symbols (``BASE/QUOTE:SETTLE``)."""
    return ":" in symbol


@dataclass(frozen=True, slots=True)
class Fill:
    """One trade on a venue, ours (a hedge fill) or the desk's (inventory flow).

    ``ts`` is the venue's timestamp in epoch seconds; ``received_at`` is the engine clock's
    monotonic reading when the daemon received it (used for decision latency).
    ``client_order_id`` is set when the fill belongs to an order this daemon placed.
    """

    venue: str
    trade_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal
    fee: Decimal = ZERO
    fee_currency: str | None = None
    ts: float = 0.0
    received_at: float = 0.0
    client_order_id: str | None = None

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.side is Side.BUY else -self.amount


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """A funding payment on a perpetual position, as the venue booked it.

    ``amount`` is what the account received in ``currency`` (negative: paid); ``ts`` is the
    funding time, epoch seconds; ``price`` the venue's price of ``currency`` in the symbol's
    quote currency at that time, where it gives one (Deribit's index, for funding paid in
    coin). ``payment_id`` is the venue's id of the payment, or
    ``<symbol>@<funding time in ms>`` where the venue gives none (:meth:`key`): with ``venue``
    it makes the payment unique, so a payment fetched twice is booked once.
    """

    venue: str
    symbol: str
    payment_id: str
    amount: Decimal
    currency: str
    ts: float
    price: Decimal | None = None

    @staticmethod
    def key(symbol: str, ts: float, venue_id: str | None = None) -> str:
        """The payment id to book under: the venue's own, else the symbol and funding time."""
        return venue_id if venue_id else f"{symbol}@{round(ts * 1000)}"


@dataclass(frozen=True, slots=True)
class PriceUpdate:
    """Best bid/ask for a symbol on a venue."""

    venue: str
    symbol: str
    bid: Decimal
    ask: Decimal
    ts: float
    received_at: float = 0.0

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2


class OrderStatus(StrEnum):
    """Order state machine: NEW -> SUBMITTED -> PARTIALLY_FILLED -> one final state."""

    NEW = "new"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # sent, outcome not known yet (timeout); never final

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class OrderType(StrEnum):
    """How a hedge intent is executed (``PASSIVE``) or one order is placed (the others)."""

    MARKET = "market"
    LIMIT_IOC = "limit_ioc"
    PASSIVE = "passive"  # an intent worked by post-only child orders (hedgerd.executor.passive)
    POST_ONLY = "post_only"  # one child order: a limit that rests, never takes liquidity


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """What the executor needs to know of an instrument (from ccxt ``load_markets``).

    ``amount_step``/``price_step`` are tick sizes; amounts are in contracts. ``instrument``
    (:mod:`hedgerd.instruments`) says what a contract is worth: when it is set, the ledger,
    the engine and the executor count positions and orders of this market in contracts, and
    every venue that holds derivatives inventory sets it. None is the legacy linear/spot market,
    counted in base units, where ``contract_size`` converts contracts to base units (1 for most
    linear perps, so the two counts agree).
    """

    symbol: str
    base: str
    quote: str
    amount_step: Decimal
    price_step: Decimal
    min_amount: Decimal = ZERO
    max_amount: Decimal | None = None
    min_notional: Decimal = ZERO
    contract_size: Decimal = Decimal(1)
    instrument: Instrument | None = None


@dataclass(frozen=True, slots=True)
class OptionGreeks:
    """The greeks a venue publishes for one option, per unit of underlying (Deribit's ticker
    ``greeks``: delta dimensionless, premium-adjusted for coin-settled options as the venue
    documents it; gamma in coin per unit of price; vega in quote per vol point as published)."""

    delta: float
    gamma: float
    vega: float


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """One option's mark from its venue.

    ``mark_price`` is the option's mark in its settle currency per unit of underlying (coin for
    Deribit); ``mark_iv`` the mark implied volatility as an annualised fraction (0.6 = 60 %);
    ``underlying_price`` the forward for the option's expiry (quote per coin). ``ts`` is the
    venue's timestamp (epoch seconds), ``received_at`` the engine clock's monotonic reading on
    arrival. ``greeks`` is what the venue publishes, if it does.
    """

    venue: str
    symbol: str
    mark_price: Decimal
    mark_iv: float
    underlying_price: Decimal
    ts: float
    greeks: OptionGreeks | None = None
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class HedgeIntent:
    """A durable decision to trade, journaled before any order is sent.

    ``intent_id`` is assigned by the ledger; ``client_order_id`` is derived from it, so a
    retry or a restart always reuses the same id and the venue can never hold it twice.
    ``amount`` is positive, in the hedge market's unit (contracts when its
    :class:`MarketInfo` has an ``instrument``, else base units); ``side`` gives the direction.
    """

    intent_id: int
    client_order_id: str
    underlying: str
    venue: str
    symbol: str
    side: Side
    amount: Decimal
    created_at: float
    reduce_only: bool = False
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    reason: str = ""
    decision_mid: Decimal | None = None  # the hedge venue's quote when decided (fill slippage is
    decision_half_spread: Decimal | None = None  # measured against it), journaled with the intent

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.side is Side.BUY else -self.amount


@dataclass(frozen=True, slots=True)
class OrderReport:
    """A venue's answer about one of our orders."""

    client_order_id: str
    symbol: str
    status: OrderStatus
    filled: Decimal = ZERO
    average_price: Decimal | None = None
    fee: Decimal = ZERO
    venue_order_id: str | None = None
    ts: float = 0.0
    fills: tuple[Fill, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class PositionRisk:
    """A venue's view of one derivative position's margin: liquidation price and margin ratio
    (maintenance margin / margin balance; 1 = liquidated), either None when the venue gives none."""

    venue: str
    symbol: str
    position: Decimal  # signed base units
    mark: Decimal | None
    liquidation_price: Decimal | None
    margin_ratio: Decimal | None
    ts: float = 0.0


class TradingState(IntEnum):
    """Kill-switch states; the integer is the ``hedgerd_trading_state`` metric value."""

    ACTIVE = 0
    REDUCING = 1
    HALTED = 2
