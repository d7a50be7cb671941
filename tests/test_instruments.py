"""The instrument model: building it from ccxt and Deribit market data, and its checks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from hedgerd.instruments import (
    Instrument,
    InstrumentKind,
    OptionType,
    contracts_from_deribit_amount,
    from_ccxt_market,
    from_deribit_instrument,
    parse_deribit_name,
)

D = Decimal
DEC27_2026_MS = int(datetime(2026, 12, 27, 8, tzinfo=UTC).timestamp() * 1000)


def ccxt_market(**fields: Any) -> dict[str, Any]:
    market: dict[str, Any] = {"symbol": "X", "base": "BTC", "quote": "USDT", "settle": None, "type": "spot",
                              "spot": False, "swap": False, "future": False, "option": False, "linear": None,
                              "inverse": None, "contractSize": None, "expiry": None, "strike": None,
                              "optionType": None}
    market.update(fields)
    return market


def test_ccxt_spot() -> None:
    inst = from_ccxt_market(ccxt_market(symbol="BTC/USDT", spot=True))
    assert (inst.kind, inst.underlying, inst.settle, inst.contract_size) == (InstrumentKind.SPOT, "BTC", "USDT", 1)
    assert inst.expiry is None and not inst.perpetual


def test_ccxt_linear_perpetual() -> None:
    inst = from_ccxt_market(ccxt_market(symbol="BTC/USDT:USDT", type="swap", swap=True, linear=True, inverse=False,
                                        settle="USDT", contractSize=0.001))
    assert inst.kind is InstrumentKind.LINEAR
    assert inst.contract_size == D("0.001")  # from the float's str, not its binary expansion
    assert inst.perpetual and not inst.coin_settled


def test_ccxt_inverse_perpetual_and_dated_future() -> None:
    perp = from_ccxt_market(ccxt_market(symbol="BTC/USD:BTC", quote="USD", type="swap", swap=True, linear=False,
                                        inverse=True, settle="BTC", contractSize=10))
    assert (perp.kind, perp.contract_size, perp.settle) == (InstrumentKind.INVERSE, D(10), "BTC")
    assert perp.perpetual and perp.coin_settled
    future = from_ccxt_market(ccxt_market(symbol="BTC/USD:BTC-261227", quote="USD", type="future", future=True,
                                          linear=False, inverse=True, settle="BTC", contractSize=10,
                                          expiry=DEC27_2026_MS))
    assert future.kind is InstrumentKind.INVERSE and not future.perpetual
    assert future.expiry == DEC27_2026_MS / 1000


@pytest.mark.parametrize(("settle", "coin"), [("BTC", True), ("USDT", False)])
def test_ccxt_option(settle: str, coin: bool) -> None:
    inst = from_ccxt_market(ccxt_market(symbol="BTC/USD:BTC-261227-100000-C", quote="USD", type="option",
                                        option=True, settle=settle, contractSize=1, strike=100000,
                                        optionType="call", expiry=DEC27_2026_MS))
    assert (inst.kind, inst.option_type, inst.strike) == (InstrumentKind.OPTION, OptionType.CALL, D(100000))
    assert inst.coin_settled is coin
    assert inst.expiry == DEC27_2026_MS / 1000
    assert not inst.expired(inst.expiry - 1) and inst.expired(inst.expiry)


@pytest.mark.parametrize("fields", [
    {"type": "swap", "linear": None, "inverse": None, "contractSize": 1},  # unknown unit: fail closed
    {"type": "swap", "linear": True, "inverse": True, "contractSize": 1},
    {"type": "swap", "linear": True, "inverse": False, "contractSize": None},
    {"type": "swap", "linear": True, "inverse": False, "contractSize": 0},
    {"type": "margin"},
    {"type": "option", "option": True, "contractSize": 1, "strike": 100, "optionType": "straddle",
     "expiry": DEC27_2026_MS},
    {"type": "option", "option": True, "contractSize": 1, "strike": None, "optionType": "put",
     "expiry": DEC27_2026_MS},
    {"type": "option", "option": True, "contractSize": 1, "strike": 100, "optionType": "put", "expiry": None},
    {"base": None, "spot": True},
])
def test_ccxt_markets_that_cannot_be_valued_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        from_ccxt_market(ccxt_market(**fields))


def test_instrument_checks_its_fields_against_its_kind() -> None:
    with pytest.raises(ValueError):
        Instrument("X", InstrumentKind.LINEAR, "BTC", "USDT", "USDT", D(1), strike=D(100))
    with pytest.raises(ValueError):
        Instrument("X", InstrumentKind.OPTION, "BTC", "USD", "BTC", D(1), expiry=1.0, strike=D(-1),
                   option_type=OptionType.PUT)
    with pytest.raises(ValueError):
        Instrument("X", InstrumentKind.SPOT, "BTC", "USDT", "USDT", D(1), expiry=1.0)
    with pytest.raises(ValueError):
        Instrument("X", InstrumentKind.SPOT, "BTC", "USDT", "USDT", D(-1))


def test_parse_deribit_names() -> None:
    option = parse_deribit_name("BTC-27DEC26-100000-C")
    assert (option.base, option.counter, option.strike, option.option_type) == ("BTC", None, D(100000),
                                                                                OptionType.CALL)
    assert option.expiry == DEC27_2026_MS / 1000  # 08:00 UTC on the named day
    perp = parse_deribit_name("BTC-PERPETUAL")
    assert (perp.expiry, perp.strike, perp.option_type) == (None, None, None)
    future = parse_deribit_name("ETH-5JAN27")
    assert future.expiry == datetime(2027, 1, 5, 8, tzinfo=UTC).timestamp()
    linear = parse_deribit_name("XRP_USDC-27DEC26-0d625-P")
    assert (linear.base, linear.counter, linear.strike, linear.option_type) == ("XRP", "USDC", D("0.625"),
                                                                                OptionType.PUT)


@pytest.mark.parametrize("name", ["BTC", "BTC-27XYZ26", "BTC-32DEC26", "BTC-27DEC26-100000-X", "btc-PERPETUAL"])
def test_parse_deribit_name_rejects_malformed(name: str) -> None:
    with pytest.raises(ValueError):
        parse_deribit_name(name)


def deribit(**fields: Any) -> dict[str, Any]:
    # Field names and values as public/get_instruments returns them.
    info: dict[str, Any] = {"instrument_name": "BTC-PERPETUAL", "kind": "future", "instrument_type": "reversed",
                            "base_currency": "BTC", "counter_currency": "USD", "quote_currency": "USD",
                            "settlement_currency": "BTC", "settlement_period": "perpetual", "contract_size": 10.0,
                            "expiration_timestamp": 32503708800000, "min_trade_amount": 10.0}
    info.update(fields)
    return info


def test_deribit_inverse_perpetual_ignores_its_far_future_expiration() -> None:
    inst = from_deribit_instrument(deribit())
    assert (inst.kind, inst.contract_size, inst.expiry, inst.settle) == (InstrumentKind.INVERSE, D(10), None, "BTC")
    assert inst.perpetual


def test_deribit_linear_perpetual_and_dated_future() -> None:
    linear = from_deribit_instrument(deribit(instrument_name="BTC_USDC-PERPETUAL", instrument_type="linear",
                                             counter_currency="USDC", settlement_currency="USDC",
                                             contract_size=0.001))
    assert (linear.kind, linear.contract_size, linear.settle) == (InstrumentKind.LINEAR, D("0.001"), "USDC")
    dated = from_deribit_instrument(deribit(instrument_name="BTC-27DEC26", instrument_type=None,
                                            future_type="reversed", settlement_period="month",
                                            expiration_timestamp=DEC27_2026_MS))
    assert dated.kind is InstrumentKind.INVERSE and dated.expiry == DEC27_2026_MS / 1000


def test_deribit_coin_settled_option() -> None:
    inst = from_deribit_instrument(deribit(instrument_name="BTC-27DEC26-100000-P", kind="option",
                                           instrument_type=None, quote_currency="BTC", settlement_period="month",
                                           contract_size=1.0, expiration_timestamp=DEC27_2026_MS,
                                           strike=100000.0, option_type="put"))
    assert (inst.kind, inst.option_type, inst.strike, inst.underlying) == (InstrumentKind.OPTION, OptionType.PUT,
                                                                           D(100000), "BTC")
    assert inst.coin_settled and inst.quote == "USD"  # the strike is in USD even though premiums are in BTC
    assert inst.expiry == parse_deribit_name(inst.symbol).expiry


@pytest.mark.parametrize("fields", [{"kind": "future_combo"}, {"instrument_type": None, "future_type": None},
                                    {"kind": "option", "option_type": None, "strike": 1.0},
                                    {"contract_size": None}, {"base_currency": None}])
def test_deribit_instruments_that_cannot_be_valued_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        from_deribit_instrument(deribit(**fields))


def test_deribit_amounts_become_contracts() -> None:
    perp = from_deribit_instrument(deribit())
    assert contracts_from_deribit_amount(perp, D(-1000)) == D(-100)  # USD amount, 10 USD per contract
    linear = from_deribit_instrument(deribit(instrument_type="linear", settlement_currency="USDC",
                                             counter_currency="USDC", contract_size=0.001))
    assert contracts_from_deribit_amount(linear, D("0.25")) == D(250)  # BTC amount, 0.001 BTC per contract


def test_ccxt_deribit_shapes() -> None:
    # ccxt's Deribit parser gives perpetuals the far-future expiration_timestamp as `expiry`,
    # and leaves linear/inverse None (and strike None) on combos.
    perp = from_ccxt_market(ccxt_market(symbol="BTC/USD:BTC", quote="USD", settle="BTC", type="swap", swap=True,
                                        linear=False, inverse=True, contractSize=10.0, expiry=32503708800000))
    assert perp.perpetual and perp.expiry is None
    with pytest.raises(ValueError):
        from_ccxt_market(ccxt_market(symbol="BTC-FS-27DEC26_PERP", quote="USD", settle="BTC", type="future",
                                     future=True, contractSize=10.0, expiry=DEC27_2026_MS))
    with pytest.raises(ValueError):
        from_ccxt_market(ccxt_market(symbol="BTC-CS-27DEC26-100000_110000", quote="USD", settle="BTC",
                                     type="option", option=True, contractSize=1.0, expiry=DEC27_2026_MS))
