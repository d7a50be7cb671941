"""SIGHUP: every field a reload reports as applied is in effect in the running daemon.

Each reload-safe field (:func:`hedgerd.config.reloadable_fields`, so a field made reloadable
later without being wired fails here) is changed in a config file, the real
:meth:`Daemon.reload` reads it, and the test reads the value where the running component takes
it from (the token bucket, the executor, the limits the policy decides with, the kill switch's
latches, the logger, ...), before and after.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog

from hedgerd.config import (
    KillSwitchConfig,
    LedgerConfig,
    LoggingConfig,
    RateLimitConfig,
    Settings,
    SimSettings,
    VenueConfig,
    VenueRole,
    default_hedges,
    load_settings,
    masked_settings_dict,
    reload_diff,
    reloadable_fields,
    toml_dumps,
)
from hedgerd.daemon import Daemon
from hedgerd.engine import HedgeEngine
from hedgerd.log import configure_logging
from hedgerd.models import TradingState

HEDGE_VENUE, PERP = "sim-perp", "BTC/USDT:USDT"
# what "*" stands for in a reloadable field's path
CONCRETE = {"hedges.*.": "hedges.0.", "executor.rate_limits.*.": f"executor.rate_limits.{HEDGE_VENUE}."}


def state(engine: HedgeEngine) -> Any:
    return engine.hedges["BTC"]


async def kill_switch_latched(engine: HedgeEngine, latch: str) -> bool:
    await engine.evaluate()  # latches are synced on every risk pass
    return latch in engine.kill_switch.latches


async def cancels_open_orders_on_halt(engine: HedgeEngine) -> bool:
    engine.engage("reload test", "test")
    task = engine.control.cancel_task
    if task is not None:
        await task
    engine.control.cancel_task = None
    assert engine.resume("test")[0]
    return task is not None


async def halts_after_errors(engine: HedgeEngine) -> int:
    """The number of consecutive order errors at which the auto-trigger halts."""
    for errors in range(1, 50):
        engine.control.consecutive_order_errors = errors
        await engine.evaluate()
        if engine.kill_switch.state is TradingState.HALTED:
            assert "error" in engine.kill_switch.reason
            assert engine.resume("test")[0]
            return errors
    raise AssertionError("never halted")


async def debug_enabled(engine: HedgeEngine) -> bool:
    return bool(structlog.get_logger("hedgerd.engine").bind().is_enabled_for(logging.DEBUG))


def sync(read: Callable[[HedgeEngine], Any]) -> Callable[[HedgeEngine], Awaitable[Any]]:
    async def reader(engine: HedgeEngine) -> Any:
        return read(engine)
    return reader


def limit(name: str) -> Callable[[HedgeEngine], Awaitable[Any]]:
    return sync(lambda e: getattr(e.risk_pass.limits(state(e)), name))


def executor_config(name: str) -> Callable[[HedgeEngine], Awaitable[Any]]:
    return sync(lambda e: getattr(state(e).executor.config, name))


@dataclass(frozen=True)
class Wired:
    """How a reload-safe field shows in the running daemon."""

    new: Any  # the value the reloaded file gives it
    read: Callable[[HedgeEngine], Awaitable[Any]]  # what the running component uses
    shows: tuple[Any, Any] | None = None  # (before, after) readings, when not the values themselves


WIRED: dict[str, Wired] = {
    "hedges.*.hedge_ratio": Wired(Decimal("0.5"), sync(lambda e: e.risk_pass.snapshot(state(e)).hedge_ratio)),
    "hedges.*.threshold": Wired(Decimal("0.2"), limit("threshold")),
    "hedges.*.target": Wired(Decimal("0.01"), limit("target")),
    "hedges.*.min_order": Wired(Decimal("0.002"), limit("min_order")),
    "hedges.*.max_order": Wired(Decimal("0.5"), limit("max_order")),
    "hedges.*.max_position": Wired(Decimal(5), limit("max_position")),
    "hedges.*.max_price_age": Wired(9.0, sync(lambda e: state(e).config.max_price_age)),
    "hedges.*.max_delta_notional": Wired(Decimal(500_000), sync(lambda e: state(e).config.max_delta_notional)),
    "executor.max_retries": Wired(2, executor_config("max_retries")),
    "executor.backoff_initial": Wired(0.1, executor_config("backoff_initial")),
    "executor.backoff_max": Wired(2.0, executor_config("backoff_max")),
    "executor.rate_limits.*.requests_per_second": Wired(3.0, sync(lambda e: state(e).executor.bucket.nominal_rate)),
    "executor.rate_limits.*.burst": Wired(3, sync(lambda e: state(e).executor.bucket.burst)),
    "executor.rate_limits.*.weights": Wired({"fetch_order": 2.0}, sync(
        lambda e: state(e).executor.request_weight("fetch_order")), shows=(1.0, 2.0)),
    "executor.default_rate_limit.requests_per_second": Wired(3.0, sync(
        lambda e: state(e).executor.bucket.nominal_rate)),
    "executor.default_rate_limit.burst": Wired(3, sync(lambda e: state(e).executor.bucket.burst)),
    "executor.default_rate_limit.weights": Wired({"fetch_order": 2.0}, sync(
        lambda e: state(e).executor.request_weight("fetch_order")), shows=(1.0, 2.0)),
    "executor.max_orders_in_flight": Wired(2, sync(lambda e: e.settings.executor.max_orders_in_flight)),
    "kill_switch.engaged": Wired(True, lambda e: kill_switch_latched(e, "config"), shows=(False, True)),
    "kill_switch.kill_file": Wired("<an existing file>", lambda e: kill_switch_latched(e, "kill_file"),
                                   shows=(False, True)),
    "kill_switch.cancel_open_orders_on_halt": Wired(False, cancels_open_orders_on_halt, shows=(True, False)),
    "kill_switch.max_consecutive_errors": Wired(2, halts_after_errors),
    "kill_switch.max_realized_loss": Wired(Decimal(1000), sync(lambda e: e.settings.kill_switch.max_realized_loss),
                                           shows=(None, Decimal(1000))),
    "kill_switch.min_liquidation_distance": Wired(Decimal("0.1"), sync(
        lambda e: e.settings.kill_switch.min_liquidation_distance), shows=(None, Decimal("0.1"))),
    "logging.level": Wired("debug", debug_enabled, shows=(False, True)),
    "risk.safety_tick": Wired(0.5, sync(lambda e: e._next_wait())),
    "risk.max_price_jump": Wired(Decimal("0.05"), sync(lambda e: e.price_guard.max_jump)),
    "risk.busy_poll": Wired(0.002, sync(lambda e: e.busy_poller.window)),
    "risk.pnl_method": Wired("fifo", sync(lambda e: e.pnl_book.method)),
    # what the daemon's LiquidationWatch reads before each wait
    "risk.liquidation_poll_interval": Wired(2.5, sync(lambda e: e.settings.risk.liquidation_poll_interval)),
}


def concrete(field: str) -> str:
    for generic, actual in CONCRETE.items():
        field = field.replace(generic, actual)
    return field


def base_settings(tmp_path: Path, *, field: str = "", **overrides: Any) -> Settings:
    fast = {"price_interval": 0.05, "flow_rate": 0.0, "volatility": 0.0}
    executor = Settings().executor
    if field.startswith("executor.rate_limits."):
        executor = executor.model_copy(update={"rate_limits": {HEDGE_VENUE: RateLimitConfig()}})
    return Settings(
        venues=[VenueConfig(name="sim-spot", role=VenueRole.INVENTORY, sim=SimSettings(seed=1, **fast)),
                VenueConfig(name=HEDGE_VENUE, role=VenueRole.HEDGE, sim=SimSettings(seed=2, symbol=PERP, **fast))],
        hedges=default_hedges(), executor=executor,
        kill_switch=KillSwitchConfig(kill_file=tmp_path / "KILL"),
        ledger=LedgerConfig(path=tmp_path / "ledger.sqlite"),
        logging=LoggingConfig(format="json", level="info"), **overrides)


def write_config(path: Path, data: dict[str, Any]) -> None:
    path.write_text(toml_dumps(data))


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    target[last] = value


def get_path(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, list) else data.get(part)
    return data


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The reload reads the process environment: none of the runner's HEDGERD_* settings, no
    /run/secrets; and the logging configuration the reload installs is undone afterwards."""
    for name in list(os.environ):
        if name.upper().startswith("HEDGERD_"):
            monkeypatch.delenv(name)
    (tmp_path / "secrets").mkdir()
    monkeypatch.setenv("HEDGERD_SECRETS_DIR", str(tmp_path / "secrets"))
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.reset_defaults()
        structlog.configure(**saved)


@asynccontextmanager
async def running_daemon(config_file: Path) -> AsyncIterator[Daemon]:
    """The daemon's engine started on the file's settings (no admin server, no signal handlers)."""
    settings = load_settings(config_file)
    configure_logging(settings.logging.format, settings.logging.level)  # as `hedgerd run` does
    daemon = Daemon(settings, config_file=config_file)
    await daemon.engine.start()
    try:
        deadline = time.monotonic() + 20
        while (HEDGE_VENUE, PERP) not in daemon.engine.prices:
            assert time.monotonic() < deadline, "no perp price"
            await asyncio.sleep(0.01)
        yield daemon
    finally:
        await daemon.engine.stop()


def test_every_wired_field_is_reloadable() -> None:
    assert sorted(WIRED) == sorted(reloadable_fields())  # nothing wired that a reload refuses


@pytest.mark.parametrize("field", reloadable_fields())
async def test_a_reloaded_field_is_in_effect_in_the_running_daemon(field: str, tmp_path: Path) -> None:
    wired = WIRED.get(field)
    if wired is None:
        pytest.fail(f"{field} is reload-safe (config.SAFE_RELOAD_FIELDS) but nothing shows it takes effect: "
                    "apply it to the running component and add it to WIRED, or make it need a restart")
    data = masked_settings_dict(base_settings(tmp_path, field=field))
    path = concrete(field)
    new = wired.new
    if field == "kill_switch.kill_file":
        (tmp_path / "KILL-now").touch()
        new = str(tmp_path / "KILL-now")
    before, after = wired.shows or (get_path(data, path), new)
    config_file = tmp_path / "hedgerd.toml"
    write_config(config_file, data)
    async with running_daemon(config_file) as daemon:
        engine = daemon.engine
        assert await wired.read(engine) == before
        old_settings = daemon.settings
        set_path(data, path, new)
        write_config(config_file, data)

        assert daemon.reload()
        applied, rejected = reload_diff(old_settings, daemon.settings)  # what config_reloaded reports
        assert applied and all(p == path or p.startswith(path + ".") for p in applied) and rejected == []
        assert await wired.read(engine) == after


async def test_a_reloaded_safety_tick_paces_the_running_risk_loop(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = masked_settings_dict(base_settings(tmp_path))
    set_path(data, "risk.safety_tick", 3600.0)
    config_file = tmp_path / "hedgerd.toml"
    write_config(config_file, data)
    async with running_daemon(config_file) as daemon:
        executor = state(daemon.engine).executor
        refreshes: list[float] = []
        real_refresh = executor.refresh_open

        async def counted() -> None:
            refreshes.append(time.monotonic())
            await real_refresh()

        monkeypatch.setattr(executor, "refresh_open", counted)
        await asyncio.sleep(0.3)  # the loop wakes on every price (20 a second) but refreshes once a tick
        assert refreshes == []

        set_path(data, "risk.safety_tick", 0.05)
        write_config(config_file, data)
        assert daemon.reload()
        deadline = time.monotonic() + 10
        while len(refreshes) < 3:
            assert time.monotonic() < deadline, f"{len(refreshes)} refreshes after the reload to a 0.05 s tick"
            await asyncio.sleep(0.01)
