"""The simulated day's venues: the paper venues on one market, the inventory venue's client flow
shaped by the scenario (side bias, size distribution); an options book's inventory venue is the
paper options venue with the scenario's ``[options]``."""

from __future__ import annotations

from hedgerd.config import Settings, SimSettings, VenueConfig
from hedgerd.connectors.base import Venue
from hedgerd.connectors.paper import SimPerpVenue, SimSpotVenue
from hedgerd.connectors.paper_options import SimOptionsVenue
from hedgerd.errors import ConfigError
from hedgerd.models import split_symbol
from hedgerd.sim.clock import SimulatedClock
from hedgerd.sim.market import SimMarketData
from hedgerd.sim.scenario import FlowScenario, Scenario


class ScenarioSpotVenue(SimSpotVenue):
    """Inventory venue whose client flow follows the scenario: side bias and size distribution."""

    def __init__(self, name: str, settings: SimSettings, market: SimMarketData, clock: SimulatedClock,
                 flow: FlowScenario) -> None:
        super().__init__(name, settings, market, clock)
        self.flow.buy_probability = flow.buy_probability
        self.flow.size_distribution = flow.size_distribution
        self.flow.size_sigma = flow.size_sigma
        self.flow.mean_size = flow.mean_size


def build_scenario_venues(settings: Settings, scenario: Scenario, clock: SimulatedClock
                          ) -> tuple[dict[str, Venue], SimMarketData, ScenarioSpotVenue | SimOptionsVenue]:
    """The hedge's simulated venues on one shared market (inventory venue with scenario flow)."""
    hedge = settings.hedges[0]
    configs: dict[str, VenueConfig] = {v.name: v for v in settings.venues}
    perp_config = configs[hedge.venue]
    market = SimMarketData(split_symbol(perp_config.sim.symbol)[0], perp_config.sim, clock)
    venues: dict[str, Venue] = {hedge.venue: SimPerpVenue(hedge.venue, perp_config.sim, market, clock)}
    inventory: ScenarioSpotVenue | SimOptionsVenue | None = None
    for source in hedge.inventory:
        if source.venue in venues:
            continue
        cfg = configs[source.venue]
        if cfg.sim.options is not None:
            inventory = SimOptionsVenue(cfg.name, cfg.sim, market, clock)
        else:
            inventory = ScenarioSpotVenue(cfg.name, cfg.sim, market, clock, scenario.flow)
        venues[cfg.name] = inventory
    if inventory is None:
        raise ConfigError("hedges.0.inventory", "simulate needs an inventory venue")
    return venues, market, inventory
