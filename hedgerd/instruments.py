"""The instrument model: what a position in one market means in units of its underlying.

An :class:`Instrument` is venue-neutral and I/O-free. It is built from a ccxt unified market
(:func:`from_ccxt_market`) or from a Deribit ``public/get_instruments`` entry
(:func:`from_deribit_instrument`), so a Deribit connector only has to fetch and pass them on.
Positions are always counted in **contracts** (ccxt's unit); ``contract_size`` says what one
contract is, and its unit depends on the kind (see docs/instruments.md)::

    SPOT, LINEAR   contract_size = underlying per contract   (1 BTC spot, 0.001 BTC on a linear perp)
    INVERSE        contract_size = quote per contract        (10 USD on Deribit BTC-PERPETUAL)
    OPTION         contract_size = underlying per contract   (1 BTC on Deribit, 0.01 BTC on some venues)

Expiries are epoch seconds, like every other timestamp in hedgerd.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any


class InstrumentKind(StrEnum):
    """How a position's delta is computed (see :mod:`hedgerd.risk.exposure`)."""

    SPOT = "spot"
    LINEAR = "linear"  # perpetual or future, settled in the quote (or a stablecoin)
    INVERSE = "inverse"  # perpetual or future quoted in USD, sized in USD, settled in the coin
    OPTION = "option"  # European, cash-settled at expiry


class OptionType(StrEnum):
    CALL = "call"
    PUT = "put"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable market, reduced to what its delta needs.

    ``underlying`` is the coin whose price moves the position (the base); ``quote`` the
    currency prices are quoted in; ``settle`` the currency profits are paid in. ``expiry`` is
    None for spot and perpetuals. Options carry ``strike`` (quote per underlying) and
    ``option_type``. The constructor checks the fields agree with ``kind``.
    """

    symbol: str
    kind: InstrumentKind
    underlying: str
    quote: str
    settle: str
    contract_size: Decimal
    expiry: float | None = None
    strike: Decimal | None = None
    option_type: OptionType | None = None

    def __post_init__(self) -> None:
        if not self.contract_size > 0:
            raise ValueError(f"{self.symbol}: contract_size must be positive, got {self.contract_size}")
        is_option = self.kind is InstrumentKind.OPTION
        if is_option != (self.strike is not None) or is_option != (self.option_type is not None):
            raise ValueError(f"{self.symbol}: strike and option_type are required for options and only for them")
        if self.strike is not None and not self.strike > 0:
            raise ValueError(f"{self.symbol}: strike must be positive, got {self.strike}")
        if is_option and self.expiry is None:
            raise ValueError(f"{self.symbol}: an option needs an expiry")
        if self.kind is InstrumentKind.SPOT and self.expiry is not None:
            raise ValueError(f"{self.symbol}: spot has no expiry")

    @property
    def perpetual(self) -> bool:
        """True for a perpetual swap (a derivative without expiry)."""
        return self.kind in (InstrumentKind.LINEAR, InstrumentKind.INVERSE) and self.expiry is None

    @property
    def coin_settled(self) -> bool:
        """True when profits (and an option's premium) are paid in the underlying itself."""
        return self.settle == self.underlying

    def expired(self, now: float) -> bool:
        """True at and after the expiry: the contract has settled and left the book."""
        return self.expiry is not None and now >= self.expiry


def _decimal(value: Any, field: str, symbol: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{symbol}: {field} missing or not a number: {value!r}")
    try:
        # str() first: a float such as 0.1 must become Decimal("0.1"), not its binary expansion
        result = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{symbol}: {field} is not a number: {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{symbol}: {field} is not finite: {value!r}")
    return result


def _expiry_seconds(value: Any, symbol: str) -> float | None:
    if value is None:
        return None
    return float(_decimal(value, "expiry", symbol)) / 1000.0  # ccxt and Deribit give milliseconds


def from_ccxt_market(market: Mapping[str, Any]) -> Instrument:
    """Build an :class:`Instrument` from a ccxt unified market dict (``load_markets`` values).

    Uses ``type``/``option``/``spot``, ``linear``/``inverse``, ``contractSize``, ``base``,
    ``quote``, ``settle``, ``expiry`` (ms), ``strike`` and ``optionType``. A contract that is
    neither linear nor inverse, or a market type hedgerd cannot value, raises ValueError:
    failing closed beats guessing the unit of a position.
    """
    symbol = str(market.get("symbol", "?"))
    base, quote = market.get("base"), market.get("quote")
    if not base or not quote:
        raise ValueError(f"{symbol}: base and quote are required")
    settle = market.get("settle") or quote
    kind_name = market.get("type")
    if market.get("option") or kind_name == "option":
        option_type = market.get("optionType")
        if option_type not in ("call", "put"):
            raise ValueError(f"{symbol}: optionType must be call or put, got {option_type!r}")
        expiry = _expiry_seconds(market.get("expiry"), symbol)
        return Instrument(symbol=symbol, kind=InstrumentKind.OPTION, underlying=base, quote=quote, settle=settle,
                          contract_size=_decimal(market.get("contractSize"), "contractSize", symbol),
                          expiry=expiry, strike=_decimal(market.get("strike"), "strike", symbol),
                          option_type=OptionType(option_type))
    if market.get("spot") or kind_name == "spot":
        return Instrument(symbol=symbol, kind=InstrumentKind.SPOT, underlying=base, quote=quote, settle=quote,
                          contract_size=Decimal(1))
    if kind_name not in ("swap", "future"):
        raise ValueError(f"{symbol}: unsupported market type {kind_name!r}")
    if bool(market.get("linear")) == bool(market.get("inverse")):
        raise ValueError(f"{symbol}: a contract must be exactly one of linear or inverse")
    kind = InstrumentKind.LINEAR if market.get("linear") else InstrumentKind.INVERSE
    expiry = None if kind_name == "swap" else _expiry_seconds(market.get("expiry"), symbol)
    return Instrument(symbol=symbol, kind=kind, underlying=base, quote=quote, settle=settle,
                      contract_size=_decimal(market.get("contractSize"), "contractSize", symbol), expiry=expiry)


# BTC-PERPETUAL, BTC-27DEC26, BTC-27DEC26-100000-C, BTC_USDC-PERPETUAL, ETH_USDC-3JAN27-3200-P;
# strikes may carry a "d" for the decimal point (XRP_USDC-27DEC26-0d625-C).
_DERIBIT_NAME = re.compile(
    r"^(?P<base>[A-Z0-9]+)(?:_(?P<counter>[A-Z0-9]+))?-(?:(?P<perp>PERPETUAL)|(?P<date>\d{1,2}[A-Z]{3}\d{2}))"
    r"(?:-(?P<strike>\d+(?:d\d+)?)-(?P<cp>[CP]))?$")
_DERIBIT_EXPIRY_HOUR = 8  # Deribit's futures and options expire at 08:00 UTC
# Explicit: strptime's %b follows the process locale, and the names are always English.
_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}


@dataclass(frozen=True, slots=True)
class DeribitName:
    """The parts of a Deribit instrument name. ``expiry`` is epoch seconds at 08:00 UTC."""

    base: str
    counter: str | None
    expiry: float | None
    strike: Decimal | None
    option_type: OptionType | None


def parse_deribit_name(name: str) -> DeribitName:
    """Split a Deribit instrument name (``BTC-27DEC26-100000-C``) into its parts; ValueError if malformed."""
    match = _DERIBIT_NAME.match(name)
    if match is None:
        raise ValueError(f"not a Deribit instrument name: {name!r}")
    expiry = None
    if match["date"]:
        date = match["date"]
        month = _MONTHS.get(date[-5:-2])
        try:
            if month is None:
                raise ValueError
            day = datetime(2000 + int(date[-2:]), month, int(date[:-5]), _DERIBIT_EXPIRY_HOUR, tzinfo=UTC)
        except ValueError:
            raise ValueError(f"bad expiry date in {name!r}") from None
        expiry = day.timestamp()
    strike = Decimal(match["strike"].replace("d", ".")) if match["strike"] else None
    option_type = None if match["cp"] is None else (OptionType.CALL if match["cp"] == "C" else OptionType.PUT)
    return DeribitName(base=match["base"], counter=match["counter"], expiry=expiry, strike=strike,
                       option_type=option_type)


def from_deribit_instrument(info: Mapping[str, Any]) -> Instrument:
    """Build an :class:`Instrument` from a Deribit ``public/get_instruments`` result entry.

    Uses ``instrument_name``, ``kind`` (future/option/spot), ``instrument_type`` or
    ``future_type`` (``reversed`` = inverse), ``base_currency``, ``counter_currency``,
    ``settlement_currency``, ``settlement_period`` (``perpetual`` has no expiry; Deribit still
    sends a far-future ``expiration_timestamp``), ``contract_size``, ``expiration_timestamp``
    (ms), ``strike`` and ``option_type``. Combos raise ValueError.
    """
    name = str(info.get("instrument_name", "?"))
    kind = info.get("kind")
    base = info.get("base_currency")
    counter = info.get("counter_currency") or info.get("quote_currency")
    if not base or not counter:
        raise ValueError(f"{name}: base_currency and counter_currency are required")
    settle = info.get("settlement_currency") or counter
    if kind == "spot":
        return Instrument(symbol=name, kind=InstrumentKind.SPOT, underlying=base, quote=counter, settle=counter,
                          contract_size=Decimal(1))
    contract_size = _decimal(info.get("contract_size"), "contract_size", name)
    expiry = _expiry_seconds(info.get("expiration_timestamp"), name)
    if kind == "option":
        option_type = info.get("option_type")
        if option_type not in ("call", "put"):
            raise ValueError(f"{name}: option_type must be call or put, got {option_type!r}")
        return Instrument(symbol=name, kind=InstrumentKind.OPTION, underlying=base, quote=counter, settle=settle,
                          contract_size=contract_size, expiry=expiry,
                          strike=_decimal(info.get("strike"), "strike", name), option_type=OptionType(option_type))
    if kind != "future":
        raise ValueError(f"{name}: unsupported Deribit kind {kind!r}")
    future_type = info.get("instrument_type") or info.get("future_type")
    if future_type not in ("linear", "reversed"):
        raise ValueError(f"{name}: future_type must be linear or reversed, got {future_type!r}")
    if info.get("settlement_period") == "perpetual":
        expiry = None
    return Instrument(symbol=name, kind=InstrumentKind.INVERSE if future_type == "reversed" else InstrumentKind.LINEAR,
                      underlying=base, quote=counter, settle=settle, contract_size=contract_size, expiry=expiry)


def contracts_from_deribit_amount(instrument: Instrument, amount: Decimal) -> Decimal:
    """Deribit ``amount`` (a position's ``size``, an order's ``amount``) as a number of contracts.

    Deribit counts inverse futures in USD and everything else in the coin, and its
    ``contract_size`` is in that same unit (10 USD on BTC-PERPETUAL, 1 BTC on a BTC option),
    so one division serves every kind. ccxt's Deribit positions report this amount as
    ``contracts`` and its orders take it as ``amount``: they need this conversion too.
    """
    return amount / instrument.contract_size
