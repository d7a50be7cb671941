"""The options contract's configuration: '*' inventory, greeks settings, an inverse hedge, the gamma policy."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from hedgerd.config import HedgeConfig, InventorySource, PolicyConfig, Settings, VenueConfig, VenueKind, VenueRole
from hedgerd.policy import GammaBandPolicy, build_policy


def _venues() -> list[VenueConfig]:
    return [
        VenueConfig(name="deribit-book", kind=VenueKind.CCXT, exchange="deribit", role=VenueRole.INVENTORY),
        VenueConfig(name="deribit-hedge", kind=VenueKind.CCXT, exchange="deribit", role=VenueRole.HEDGE),
    ]


def _hedge(**fields: Any) -> HedgeConfig:
    base: dict[str, Any] = {"underlying": "BTC", "inventory": [InventorySource(venue="deribit-book", asset="*")],
                            "venue": "deribit-hedge", "symbol": "BTC/USD:BTC"}
    return HedgeConfig(**{**base, **fields})


def test_an_options_desk_hedged_on_an_inverse_perpetual_validates_with_its_defaults() -> None:
    settings = Settings(venues=_venues(), hedges=[_hedge()])
    hedge = settings.hedges[0]
    assert hedge.inventory[0].all_instruments
    assert (hedge.include_collateral, hedge.greeks_source, hedge.max_greeks_age,
            hedge.max_greeks_disagreement) == (False, "model", 10.0, None)


@pytest.mark.parametrize(("fields", "where"), [
    ({"greeks_source": "exchange"}, "greeks_source"),
    ({"max_greeks_age": 0}, "max_greeks_age"),
    ({"max_greeks_disagreement": Decimal(0)}, "max_greeks_disagreement"),
])
def test_bad_greeks_settings_are_refused_naming_the_field(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        _hedge(**fields)
    assert where in str(excinfo.value)


def test_a_star_inside_a_pattern_is_refused() -> None:
    with pytest.raises(ValidationError, match="stands alone"):
        InventorySource(venue="deribit-book", asset="BTC-*")


def test_an_instrument_listed_besides_star_on_the_same_venue_is_refused_as_double_counted() -> None:
    with pytest.raises(ValidationError, match="counted twice"):
        _hedge(inventory=[InventorySource(venue="deribit-book", asset="*"),
                          InventorySource(venue="deribit-book", asset="BTC/USD:BTC-261227-100000-C")])
    # the spot balance is not an instrument: it may be listed besides '*'
    _hedge(inventory=[InventorySource(venue="deribit-book", asset="*"),
                      InventorySource(venue="deribit-book", asset="BTC")])


def test_the_gamma_policy_is_built_from_the_config_with_the_adaptive_parameters() -> None:
    config = PolicyConfig.model_validate({"name": "gamma", "adaptive": {"cost_bps": 4},
                                          "gamma": {"negligible_gamma": 1e-7}})
    policy = build_policy(config)
    assert isinstance(policy, GammaBandPolicy)
    assert (policy.name, policy.params.cost_bps, policy.negligible_gamma) == ("gamma", Decimal(4), 1e-7)
    with pytest.raises(ValidationError):
        PolicyConfig.model_validate({"name": "gamma", "gamma": {"negligible_gamma": -1}})


def test_star_on_one_venue_covers_each_underlying_once() -> None:
    eth = _hedge(underlying="ETH", symbol="ETH/USD:ETH")
    Settings(venues=_venues(), hedges=[_hedge(), eth])  # BTC's and ETH's derivatives: no overlap
    with pytest.raises(ValidationError, match=r"already covered by hedges\.0"):
        Settings(venues=_venues(), hedges=[_hedge(), _hedge(underlying="btc", symbol="ETH/USD:ETH")])
