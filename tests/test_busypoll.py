"""BusyPoller: the event loop spins for a window after each venue event, then sleeps again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hedgerd.busypoll import BusyPoller
from hedgerd.config import Settings
from hedgerd.models import Side
from hedgerd.sim.day import simulation_settings
from hedgerd.sim.scenario import DEFAULT_SCENARIO
from tests.test_engine import make_settings, running_engine


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Yield until ``predicate`` holds (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.001)


@pytest.fixture
async def poller_with_window() -> AsyncIterator[tuple[BusyPoller, list[float]]]:
    window = [0.0]
    poller = BusyPoller(lambda: window[0])
    yield poller, window
    poller.stop()
    await until(lambda: not poller.spinning)


async def test_a_zero_window_never_spins(poller_with_window: tuple[BusyPoller, list[float]]) -> None:
    poller, _ = poller_with_window
    for _ in range(3):
        poller.touch()
        await asyncio.sleep(0.01)
    assert (poller.episodes, poller.spins, poller.spinning) == (0, 0, False)


async def test_a_touch_spins_the_loop_for_the_window_then_it_sleeps_until_the_next(
        poller_with_window: tuple[BusyPoller, list[float]]) -> None:
    poller, window = poller_with_window
    window[0] = 0.05
    poller.touch()
    await until(lambda: poller.spinning)
    turns = 0

    def count() -> None:  # an event-loop turn: counted each time the loop comes round
        nonlocal turns
        turns += 1

    fired: list[bool] = []
    asyncio.get_running_loop().call_later(0.01, fired.append, True)  # timers still fire while it spins
    while poller.spinning:
        asyncio.get_running_loop().call_soon(count)
        await asyncio.sleep(0)
    assert fired == [True]
    assert turns > 10 and poller.spins >= turns - 1
    assert poller.episodes == 1
    spins = poller.spins
    await asyncio.sleep(0.05)  # asleep: no more turns of its own
    assert poller.spins == spins and not poller.spinning
    poller.touch()
    await until(lambda: poller.episodes == 2)


async def test_touches_while_spinning_extend_the_window_and_a_reload_to_zero_stops_it(
        poller_with_window: tuple[BusyPoller, list[float]]) -> None:
    poller, window = poller_with_window
    window[0] = 0.03
    started = time.monotonic()
    poller.touch()
    await until(lambda: poller.spinning)
    while time.monotonic() - started < 0.1:  # touched more often than the window: one episode
        poller.touch()
        await asyncio.sleep(0.005)
    assert poller.spinning and poller.episodes == 1
    window[0] = 0.0  # read on every turn: a config reload applies at once
    await until(lambda: not poller.spinning)
    assert poller.episodes == 1


@pytest.mark.parametrize("busy_poll", [0.0, 0.2])
async def test_the_engine_spins_after_venue_events_only_when_configured(tmp_path: Path, busy_poll: float) -> None:
    base = make_settings(tmp_path)
    settings = base.model_copy(update={"risk": base.risk.model_copy(update={"busy_poll": busy_poll})})
    async with running_engine(settings) as h:
        poller = h.engine.busy_poller
        await h.client_fill(Side.BUY, "0.01")  # inside the band: no order, just the event
        if busy_poll:
            await until(lambda: poller.spins > 100)
            assert poller.spinning
        else:
            await asyncio.sleep(0.05)
            assert (poller.episodes, poller.spins) == (0, 0)
    await until(lambda: not poller.spinning)  # stop() ended it
    poller.touch()
    assert not poller.spinning


async def test_a_config_reload_turns_busy_polling_on_for_the_next_event(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running_engine(settings) as h:
        poller = h.engine.busy_poller
        await h.client_fill(Side.BUY, "0.01")
        assert poller.episodes == 0
        # what Daemon.reload does on SIGHUP: risk.** changes apply in place
        h.engine.apply_settings(settings.model_copy(
            update={"risk": settings.risk.model_copy(update={"busy_poll": 0.2})}))
        await h.client_fill(Side.BUY, "0.01")
        assert poller.spinning and poller.episodes == 1


def test_simulations_never_busy_poll(tmp_path: Path) -> None:
    configured = Settings().model_copy(update={"risk": Settings().risk.model_copy(update={"busy_poll": 1.0})})
    prepared = simulation_settings(configured, DEFAULT_SCENARIO, seed=1, ledger_path=tmp_path / "l.sqlite")
    assert configured.risk.busy_poll == 1.0 and prepared.risk.busy_poll == 0.0
