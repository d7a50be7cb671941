"""The kill switch: a pure state machine that gates every order, and its automatic triggers.

States (:class:`~hedgerd.models.TradingState`):

- ``ACTIVE``: every order is allowed;
- ``REDUCING``: only orders that shrink exposure (reduce-only) are allowed;
- ``HALTED``: nothing is sent.

Transitions (each returns whether the state changed; listeners run only on a change)::

    ACTIVE   --engage--> HALTED      ACTIVE   --reduce--> REDUCING
    REDUCING --engage--> HALTED      HALTED   --reduce--> (refused: no downgrade)
    HALTED / REDUCING --resume--> ACTIVE   (refused while a latch is held)

Leaving HALTED is always deliberate: only :meth:`KillSwitch.resume` does it, nothing in
here ever resumes by itself, and an automatic trigger clearing (a fresh price, a smaller
delta) changes nothing.

*Latches* are standing halt conditions owned by something outside the switch: the kill
file existing, ``kill_switch.engaged = true`` in the config. The engine reports them every
tick with :meth:`KillSwitch.set_latch` (``set_latch("kill_file", path.exists(), now)``).
Raising a latch halts; while any latch is held :meth:`KillSwitch.resume` refuses (returns
False, :meth:`KillSwitch.resume_refusal` says which latch). Dropping a latch does *not*
resume: the operator still has to, so removing the kill file alone never restarts trading.

The reason that first halted trading is kept while halted (a later ``engage`` while already
HALTED changes nothing), so the root cause stays visible in ``/status`` and metrics.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from hedgerd.models import TradingState


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of the kill switch."""

    at: float
    previous: TradingState
    state: TradingState
    reason: str
    source: str


Listener = Callable[["KillSwitch"], None]


class KillSwitch:
    """Trading state with reason, source and time of the last change; see the module docs.

    ``now`` arguments are wall-clock epoch seconds from the engine clock. ``history`` keeps
    the last ``history_size`` transitions, oldest first.
    """

    def __init__(self, *, now: float = 0.0, history_size: int = 100) -> None:
        self._state = TradingState.ACTIVE
        self._reason = ""
        self._source = ""
        self._since = now
        self._latches: dict[str, str] = {}  # latch name -> reason it was raised with
        self._refusal = ""
        self._listeners: list[Listener] = []
        self._history: deque[Transition] = deque(maxlen=history_size)

    # ------------------------------------------------------------------ views
    @property
    def state(self) -> TradingState:
        return self._state

    @property
    def reason(self) -> str:
        """Why the current state was entered ("" at start)."""
        return self._reason

    @property
    def source(self) -> str:
        """Who entered it: "signal", "http", "auto", a latch name..."""
        return self._source

    @property
    def since(self) -> float:
        """When the current state was entered."""
        return self._since

    @property
    def latches(self) -> frozenset[str]:
        """Names of the latches currently held."""
        return frozenset(self._latches)

    @property
    def history(self) -> tuple[Transition, ...]:
        return tuple(self._history)

    def latched(self, name: str) -> bool:
        return name in self._latches

    def resume_refusal(self) -> str:
        """Why the last :meth:`resume` was refused ("" if it was not)."""
        return self._refusal

    def allows(self, reduces_position: bool) -> bool:
        """Whether an order may be sent now: all when ACTIVE, reducing ones when REDUCING."""
        if self._state is TradingState.ACTIVE:
            return True
        return self._state is TradingState.REDUCING and reduces_position

    # ------------------------------------------------------------------ transitions
    def engage(self, reason: str, source: str, now: float) -> bool:
        """Halt. False (and the first reason kept) if already HALTED."""
        if self._state is TradingState.HALTED:
            return False
        self._move(TradingState.HALTED, reason, source, now)
        return True

    def reduce(self, reason: str, source: str, now: float) -> bool:
        """Allow only position-reducing orders. Only from ACTIVE: never downgrades a halt."""
        if self._state is not TradingState.ACTIVE:
            return False
        self._move(TradingState.REDUCING, reason, source, now)
        return True

    def resume(self, source: str, now: float, reason: str = "") -> bool:
        """Back to ACTIVE, the only way out of HALTED or REDUCING.

        Refused (False, :meth:`resume_refusal` set) while a latch is held; False without a
        refusal when already ACTIVE.
        """
        if self._latches:
            held = ", ".join(f"{name} ({why})" for name, why in sorted(self._latches.items()))
            self._refusal = f"halt latched by {held}"
            return False
        self._refusal = ""
        if self._state is TradingState.ACTIVE:
            return False
        self._move(TradingState.ACTIVE, reason or f"resumed by {source}", source, now)
        return True

    def set_latch(self, name: str, held: bool, now: float, reason: str = "") -> bool:
        """Report whether the standing halt condition ``name`` holds; call it every tick.

        Raising a latch engages the halt (source ``name``, reason ``reason`` or
        "latch <name> held"); while held the state stays HALTED. Releasing it only lifts the
        veto on :meth:`resume`. Returns whether the *latch* changed (raised or released).
        """
        if held:
            # Engage even if the latch was already held: the state must be HALTED under a latch.
            newly = name not in self._latches
            if newly:
                self._latches[name] = reason or f"latch {name} held"
            self.engage(self._latches[name], name, now)
            return newly
        if name in self._latches:
            del self._latches[name]
            return True
        return False

    # ------------------------------------------------------------------ listeners
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(switch)`` after every state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def _move(self, state: TradingState, reason: str, source: str, now: float) -> None:
        self._history.append(Transition(at=now, previous=self._state, state=state, reason=reason,
                                        source=source))
        self._state, self._reason, self._source, self._since = state, reason, source, now
        # The new state is committed before anyone is told. Every listener runs even if one
        # fails; the first failure is re-raised afterwards so it is not lost.
        error: Exception | None = None
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error


def evaluate_auto_triggers(
    *,
    price_ages: Mapping[str, tuple[float, float]],
    delta_notionals: Mapping[str, tuple[Decimal, Decimal]],
    consecutive_errors: int,
    max_consecutive_errors: int,
    realized_loss: Decimal = Decimal(0),
    max_realized_loss: Decimal | None = None,
    greeks_ages: Mapping[str, tuple[float, float]] | None = None,
    greeks_disagreements: Mapping[str, tuple[Decimal, Decimal]] | None = None,
) -> str | None:
    """The first automatic halt condition breached, as a reason string, or None.

    - ``price_ages``: symbol -> (seconds since the last accepted price, max age). Breached
      when the age exceeds the max or is not a finite number (fail closed). The engine
      passes the time since start for a symbol that never had a price, so a feed that never
      delivers halts too.
    - ``delta_notionals``: underlying -> (net delta notional, max); breached when
      ``|notional| > max`` (or it is NaN). Underlyings without a price are left out (the price-age trigger
      covers them).
    - ``greeks_ages``: underlying -> (seconds since the oldest option quote among the held
      options arrived, max age); breached like a price age. The engine passes the time since
      start for an option that never had a quote.
    - ``greeks_disagreements``: underlying -> (|options delta by model - by venue|, max);
      breached when above the max (or NaN).
    - ``consecutive_errors``: breached at ``>= max_consecutive_errors``.
    - ``realized_loss`` (positive = a loss, quote units): breached when above
      ``max_realized_loss``; None disables it.

    Checked in that order; within each, keys in sorted order, so the answer is deterministic.
    """
    for symbol in sorted(price_ages):
        age, max_age = price_ages[symbol]
        if not math.isfinite(age) or age > max_age:
            return f"stale price: {symbol} last accepted {age:.1f}s ago (max {max_age:g}s)"
    greeks_ages = greeks_ages or {}
    for underlying in sorted(greeks_ages):
        age, max_age = greeks_ages[underlying]
        if not math.isfinite(age) or age > max_age:
            return f"stale greeks: {underlying} oldest option quote {age:.1f}s old (max {max_age:g}s)"
    greeks_disagreements = greeks_disagreements or {}
    for underlying in sorted(greeks_disagreements):
        gap, max_gap = greeks_disagreements[underlying]
        if gap.is_nan() or gap > max_gap:
            return (f"greeks disagreement: {underlying} options delta by model and by venue differ by "
                    f"{gap:.6f} > {max_gap}")
    for underlying in sorted(delta_notionals):
        notional, max_notional = delta_notionals[underlying]
        if notional.is_nan() or abs(notional) > max_notional:
            return f"net delta notional: {underlying} |{notional:.2f}| > {max_notional}"
    if consecutive_errors >= max_consecutive_errors:
        return f"order errors: {consecutive_errors} consecutive (max {max_consecutive_errors})"
    if max_realized_loss is not None and realized_loss > max_realized_loss:
        return f"realized loss: {realized_loss} > limit {max_realized_loss}"
    return None
