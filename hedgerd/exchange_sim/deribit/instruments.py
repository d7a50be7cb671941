"""Deribit's instrument catalogue and its marks, built on the shared market model.

Per currency (BTC, ETH): the inverse perpetual, two dated inverse futures and options over the
same two expiries (five strikes around the index, calls and puts). Fields and sizes follow
Deribit's ``public/get_instruments``; the index is the shared engine's mid of ``{BASE}USDT``,
so a Binance and a Deribit protocol served together see one market.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hedgerd.risk.greeks import Greeks, black76, premium_adjusted, year_fraction

PERPETUAL_EXPIRY_MS = 32503708800000  # Deribit's far-future expiration_timestamp of perpetuals
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: annual basis of dated futures over the index (contango), so futures and the perp differ
FUTURE_BASIS = 0.05


@dataclass(frozen=True)
class CurrencySpec:
    """Per-currency listing parameters (Deribit's values)."""

    currency: str
    future_contract: Decimal  # USD per contract of the inverse futures
    future_tick: Decimal
    option_min: Decimal
    strike_step: Decimal
    atm_vol: float  # annualised implied vol at the money


BTC_SPEC = CurrencySpec("BTC", Decimal(10), Decimal("0.5"), Decimal("0.1"), Decimal(1000), 0.55)
ETH_SPEC = CurrencySpec("ETH", Decimal(1), Decimal("0.05"), Decimal(1), Decimal(50), 0.65)

# Deribit fee schedule (fractions; futures of the USD notional, options of the underlying amount)
FUTURE_MAKER_FEE = Decimal(0)
FUTURE_TAKER_FEE = Decimal("0.0005")
OPTION_FEE = Decimal("0.0003")
OPTION_FEE_CAP = Decimal("0.125")  # of the option's price


@dataclass(frozen=True)
class Instrument:
    """One Deribit instrument (``kind`` future or option; perpetuals are futures)."""

    name: str
    currency: str
    kind: str
    settlement_period: str
    expiry_ms: int
    created_ms: int
    contract_size: Decimal
    tick_size: Decimal
    min_trade_amount: Decimal
    strike: Decimal | None = None
    option_type: str | None = None

    @property
    def is_option(self) -> bool:
        return self.kind == "option"

    @property
    def is_perpetual(self) -> bool:
        return self.settlement_period == "perpetual"

    def tick_at(self, price: Decimal) -> Decimal:
        """Options trade in 0.0005 ticks above 0.005 coin (Deribit's ``tick_size_steps``)."""
        if self.is_option and price > Decimal("0.005"):
            return Decimal("0.0005")
        return self.tick_size

    def as_json(self) -> dict[str, object]:
        """Deribit's ``public/get_instruments`` entry."""
        maker = OPTION_FEE if self.is_option else FUTURE_MAKER_FEE
        taker = OPTION_FEE if self.is_option else FUTURE_TAKER_FEE
        out: dict[str, object] = {
            "instrument_name": self.name, "kind": self.kind, "is_active": True,
            "base_currency": self.currency, "counter_currency": "USD",
            "quote_currency": self.currency if self.is_option else "USD",
            "settlement_currency": self.currency, "settlement_period": self.settlement_period,
            "expiration_timestamp": self.expiry_ms, "creation_timestamp": self.created_ms,
            "contract_size": float(self.contract_size), "tick_size": float(self.tick_size),
            "min_trade_amount": float(self.min_trade_amount), "maker_commission": float(maker),
            "taker_commission": float(taker), "block_trade_commission": float(maker),
            "instrument_id": abs(hash(self.name)) % 1_000_000, "price_index": f"{self.currency.lower()}_usd",
            "rfq": False,
        }
        if self.is_option:
            out["strike"] = float(self.strike or 0)
            out["option_type"] = self.option_type
            out["tick_size_steps"] = [{"above_price": 0.005, "tick_size": 0.0005}]
        else:
            out["future_type"] = "reversed"
            out["instrument_type"] = "reversed"
            out["max_leverage"] = 50
            out["max_liquidation_commission"] = 0.0075
        return out


def expiry_code(expiry: datetime) -> str:
    """``27DEC26`` (Deribit writes the day without a leading zero)."""
    return f"{expiry.day}{MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


def expiries(now_ms: int) -> tuple[datetime, datetime]:
    """A weekly (the Friday 08:00 UTC at least two days away) and the monthly (last Friday of
    the following month) expiry, as Deribit lists them."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    day = (now + timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
    while day.weekday() != 4:
        day += timedelta(days=1)
    first_next = (now.replace(day=1) + timedelta(days=32)).replace(day=1)
    after = (first_next + timedelta(days=32)).replace(day=1, hour=8, minute=0, second=0, microsecond=0)
    last = after - timedelta(days=1)
    while last.weekday() != 4:
        last -= timedelta(days=1)
    return day, last


def catalogue(spec: CurrencySpec, index: Decimal, now_ms: int) -> list[Instrument]:
    """The perpetual, two futures and the options of one currency listed at ``now_ms``."""
    cur = spec.currency
    out = [Instrument(f"{cur}-PERPETUAL", cur, "future", "perpetual", PERPETUAL_EXPIRY_MS,
                      1534242287000, spec.future_contract, spec.future_tick, spec.future_contract)]
    atm = (index / spec.strike_step).to_integral_value() * spec.strike_step
    for expiry, period in zip(expiries(now_ms), ("week", "month"), strict=True):
        code = expiry_code(expiry)
        expiry_ms = int(expiry.timestamp() * 1000)
        out.append(Instrument(f"{cur}-{code}", cur, "future", period, expiry_ms, now_ms,
                              spec.future_contract, spec.future_tick, spec.future_contract))
        for k in range(-2, 3):
            strike = atm + k * spec.strike_step
            for letter, option_type in (("C", "call"), ("P", "put")):
                out.append(Instrument(f"{cur}-{code}-{strike:f}-{letter}", cur, "option", period,
                                      expiry_ms, now_ms, Decimal(1), Decimal("0.0001"),
                                      spec.option_min, strike, option_type))
    return out


def forward(inst: Instrument, index: float, now_ms: int, premium: float = 0.0) -> float:
    """Fair price of a dated future (index times the basis to expiry); the perp marks at the
    index times one plus its premium."""
    if inst.is_perpetual:
        return index * (1.0 + premium)
    return index * math.exp(FUTURE_BASIS * year_fraction(inst.expiry_ms / 1000, now_ms / 1000))


def implied_vol(spec: CurrencySpec, strike: float, fwd: float) -> float:
    """A smile: the ATM vol plus 0.4 per unit of squared log-moneyness."""
    moneyness = math.log(strike / fwd)
    return spec.atm_vol + 0.4 * moneyness * moneyness


@dataclass(frozen=True)
class OptionMark:
    """Mark of one option: price in coin, vol, USD greeks and the coin-settled delta."""

    price: float
    iv: float
    greeks: Greeks
    coin_delta: float
    underlying: float


def option_mark(spec: CurrencySpec, inst: Instrument, index: float, now_ms: int) -> OptionMark:
    """Black-76 on the expiry's forward; the price in coin is the USD price over the forward."""
    fwd = index * math.exp(FUTURE_BASIS * year_fraction(inst.expiry_ms / 1000, now_ms / 1000))
    strike = float(inst.strike or 0)
    iv = implied_vol(spec, strike, fwd)
    t = year_fraction(inst.expiry_ms / 1000, now_ms / 1000)
    greeks = black76(forward=fwd, strike=strike, t=t, vol=iv, call=inst.option_type == "call")
    coin_delta, _ = premium_adjusted(greeks, fwd)
    return OptionMark(price=greeks.price / fwd, iv=iv, greeks=greeks, coin_delta=coin_delta,
                      underlying=fwd)
