"""Kill switch transitions, latches, listeners and automatic triggers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hedgerd.killswitch import KillSwitch, Transition, evaluate_auto_triggers
from hedgerd.models import TradingState

D = Decimal
ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


@pytest.fixture
def ks() -> KillSwitch:
    return KillSwitch(now=100.0)


def test_starts_active_and_allows_everything(ks: KillSwitch) -> None:
    assert ks.state is ACTIVE
    assert ks.since == 100.0
    assert ks.allows(reduces_position=True) and ks.allows(reduces_position=False)
    assert ks.history == ()


def test_engage_halts_and_blocks_every_order(ks: KillSwitch) -> None:
    assert ks.engage("operator", "http", 110.0) is True
    assert (ks.state, ks.reason, ks.source, ks.since) == (HALTED, "operator", "http", 110.0)
    assert not ks.allows(reduces_position=True)
    assert not ks.allows(reduces_position=False)


def test_engage_when_halted_keeps_the_first_reason(ks: KillSwitch) -> None:
    ks.engage("stale price", "auto", 110.0)
    assert ks.engage("operator", "signal", 120.0) is False
    assert (ks.reason, ks.source, ks.since) == ("stale price", "auto", 110.0)
    assert len(ks.history) == 1


def test_reducing_allows_only_position_reducing_orders(ks: KillSwitch) -> None:
    assert ks.reduce("max position", "auto", 110.0) is True
    assert ks.state is REDUCING
    assert ks.allows(reduces_position=True)
    assert not ks.allows(reduces_position=False)
    assert ks.reduce("again", "auto", 111.0) is False
    assert ks.reason == "max position"


def test_engage_from_reducing_halts(ks: KillSwitch) -> None:
    ks.reduce("max position", "auto", 110.0)
    assert ks.engage("operator", "http", 120.0) is True
    assert ks.state is HALTED


def test_reduce_never_downgrades_a_halt(ks: KillSwitch) -> None:
    ks.engage("operator", "http", 110.0)
    assert ks.reduce("softer", "auto", 120.0) is False
    assert ks.state is HALTED and ks.reason == "operator"


@pytest.mark.parametrize("enter", ["engage", "reduce"])
def test_resume_returns_to_active(ks: KillSwitch, enter: str) -> None:
    getattr(ks, enter)("why", "auto", 110.0)
    assert ks.resume("signal", 130.0) is True
    assert (ks.state, ks.source, ks.since) == (ACTIVE, "signal", 130.0)
    assert "signal" in ks.reason
    assert ks.resume_refusal() == ""


def test_resume_when_active_is_a_no_op(ks: KillSwitch) -> None:
    assert ks.resume("http", 110.0) is False
    assert ks.resume_refusal() == ""
    assert ks.history == ()


def test_resume_with_explicit_reason(ks: KillSwitch) -> None:
    ks.engage("x", "auto", 110.0)
    ks.resume("cli", 120.0, reason="checked the feed")
    assert ks.reason == "checked the feed"


def test_history_records_transitions_and_is_bounded() -> None:
    ks = KillSwitch(history_size=3)
    ks.engage("a", "http", 1.0)
    ks.resume("http", 2.0)
    ks.reduce("b", "auto", 3.0)
    ks.engage("c", "signal", 4.0)
    assert [t.state for t in ks.history] == [ACTIVE, REDUCING, HALTED]
    assert ks.history[-1] == Transition(at=4.0, previous=REDUCING, state=HALTED, reason="c", source="signal")


# ----------------------------------------------------------------------------- listeners
def test_listeners_run_once_per_change_only(ks: KillSwitch) -> None:
    seen: list[tuple[TradingState, str]] = []
    ks.add_listener(lambda s: seen.append((s.state, s.reason)))
    ks.engage("a", "http", 1.0)
    ks.engage("b", "http", 2.0)   # no change
    ks.reduce("c", "auto", 3.0)   # refused
    ks.resume("http", 4.0)
    ks.resume("http", 5.0)        # no change
    assert seen == [(HALTED, "a"), (ACTIVE, "resumed by http")]


def test_failing_listener_does_not_stop_the_halt_or_other_listeners(ks: KillSwitch) -> None:
    calls: list[TradingState] = []

    def broken(_: KillSwitch) -> None:
        raise RuntimeError("metrics down")

    ks.add_listener(broken)
    ks.add_listener(lambda s: calls.append(s.state))
    with pytest.raises(RuntimeError, match="metrics down"):
        ks.engage("a", "http", 1.0)
    assert ks.state is HALTED
    assert calls == [HALTED]


def test_removed_listener_is_not_called(ks: KillSwitch) -> None:
    calls: list[TradingState] = []

    def listener(s: KillSwitch) -> None:
        calls.append(s.state)

    ks.add_listener(listener)
    ks.remove_listener(listener)
    ks.engage("a", "http", 1.0)
    assert calls == []


# ----------------------------------------------------------------------------- latches
def test_raising_a_latch_halts_and_blocks_resume(ks: KillSwitch) -> None:
    assert ks.set_latch("kill_file", True, 110.0, reason="kill file var/KILL exists") is True
    assert (ks.state, ks.source, ks.reason) == (HALTED, "kill_file", "kill file var/KILL exists")
    assert ks.latches == frozenset({"kill_file"}) and ks.latched("kill_file")

    assert ks.resume("http", 120.0) is False
    assert ks.state is HALTED
    assert "kill_file" in ks.resume_refusal()


def test_releasing_a_latch_does_not_resume(ks: KillSwitch) -> None:
    ks.set_latch("kill_file", True, 110.0)
    assert ks.set_latch("kill_file", False, 120.0) is True
    assert ks.state is HALTED
    assert ks.latches == frozenset()
    assert ks.resume("signal", 130.0) is True
    assert ks.state is ACTIVE


def test_latch_held_every_tick_reports_no_change(ks: KillSwitch) -> None:
    ks.set_latch("config", True, 110.0)
    assert ks.set_latch("config", True, 111.0) is False
    assert ks.set_latch("kill_file", False, 111.0) is False
    assert len(ks.history) == 1


def test_every_latch_must_be_released_before_resume(ks: KillSwitch) -> None:
    ks.set_latch("config", True, 110.0)
    ks.set_latch("kill_file", True, 111.0)
    ks.set_latch("kill_file", False, 112.0)
    assert ks.resume("http", 113.0) is False
    assert "config" in ks.resume_refusal() and "kill_file" not in ks.resume_refusal()
    ks.set_latch("config", False, 114.0)
    assert ks.resume("http", 115.0) is True


def test_latch_on_an_existing_halt_keeps_the_reason_but_blocks_resume(ks: KillSwitch) -> None:
    ks.engage("stale price", "auto", 110.0)
    ks.set_latch("kill_file", True, 111.0)
    assert (ks.reason, ks.source) == ("stale price", "auto")
    assert ks.resume("http", 112.0) is False


def test_latch_halts_from_reducing(ks: KillSwitch) -> None:
    ks.reduce("max position", "auto", 110.0)
    ks.set_latch("config", True, 111.0)
    assert ks.state is HALTED


def test_no_automatic_path_out_of_halted(ks: KillSwitch) -> None:
    ks.engage("stale price", "auto", 110.0)
    ks.set_latch("kill_file", False, 111.0)
    ks.set_latch("config", False, 112.0)
    ks.reduce("anything", "auto", 113.0)
    ks.engage("again", "auto", 114.0)
    assert ks.state is HALTED and ks.reason == "stale price"


# ----------------------------------------------------------------------------- auto triggers
def triggers(**overrides: object) -> str | None:
    args: dict[str, object] = {
        "price_ages": {"BTC/USDT:USDT": (1.0, 5.0)},
        "delta_notionals": {"BTC": (D(1000), D(100000))},
        "consecutive_errors": 0,
        "max_consecutive_errors": 5,
    }
    args.update(overrides)
    return evaluate_auto_triggers(**args)  # type: ignore[arg-type]


def test_no_trigger_when_within_limits() -> None:
    assert triggers() is None
    assert triggers(price_ages={"X": (5.0, 5.0)}) is None  # exactly at max age
    assert triggers(delta_notionals={"BTC": (D(100000), D(100000))}) is None


def test_stale_price_triggers() -> None:
    reason = triggers(price_ages={"BTC/USDT:USDT": (5.5, 5.0)})
    assert reason is not None and reason.startswith("stale price") and "BTC/USDT:USDT" in reason


@pytest.mark.parametrize("age", [float("inf"), float("nan")])
def test_non_finite_price_age_triggers(age: float) -> None:
    assert triggers(price_ages={"X": (age, 5.0)}) is not None


@pytest.mark.parametrize("notional", [D("100000.01"), D("-100000.01"), D("NaN")])
def test_delta_notional_triggers_on_magnitude(notional: Decimal) -> None:
    reason = triggers(delta_notionals={"BTC": (notional, D(100000))})
    assert reason is not None and reason.startswith("net delta notional") and "BTC" in reason


def test_consecutive_errors_trigger_at_the_max() -> None:
    assert triggers(consecutive_errors=4) is None
    reason = triggers(consecutive_errors=5)
    assert reason is not None and reason.startswith("order errors")


def test_realized_loss_trigger() -> None:
    assert triggers(realized_loss=D(500), max_realized_loss=None) is None
    assert triggers(realized_loss=D(500), max_realized_loss=D(500)) is None
    reason = triggers(realized_loss=D("500.01"), max_realized_loss=D(500))
    assert reason is not None and reason.startswith("realized loss")


def test_first_breach_wins_in_a_fixed_order() -> None:
    all_breached = {
        "price_ages": {"ZZZ": (10.0, 5.0), "AAA": (9.0, 5.0)},
        "delta_notionals": {"BTC": (D(10**9), D(1))},
        "consecutive_errors": 9,
        "realized_loss": D(10**6),
        "max_realized_loss": D(1),
    }
    reason = triggers(**all_breached)
    assert reason is not None and reason.startswith("stale price") and "AAA" in reason
    reason = triggers(**{**all_breached, "price_ages": {}})
    assert reason is not None and reason.startswith("net delta notional")
    reason = triggers(**{**all_breached, "price_ages": {}, "delta_notionals": {}})
    assert reason is not None and reason.startswith("order errors")
