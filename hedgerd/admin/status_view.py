"""Readable text for the control commands' answers (``hedgerd status | kill | resume``); pure.

The daemon's JSON is validated leniently (unknown keys ignored, every field optional), so a
client and a daemon of different versions still show what they share; an answer that does not
fit at all is described as such rather than guessed at.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HedgingCostView(_View):
    """``hedging_cost`` of one underlying (quote currency), as :mod:`hedgerd.risk.cost` decomposes it."""

    total: Decimal
    fee: Decimal | None = None
    spread: Decimal | None = None
    slippage: Decimal | None = None
    funding: Decimal | None = None
    unvalued_fees: int = 0
    unmeasured_fills: int = 0


class UnderlyingView(_View):
    """One underlying in ``/status``; sizes in the underlying's units, money in the quote currency."""

    net_delta: Decimal | None = None
    threshold: Decimal | None = None
    perp_position: Decimal | None = None
    in_flight: Decimal | None = None
    hedge_venue: str | None = None
    hedge_symbol: str | None = None
    price_age_seconds: float | None = None
    realized_pnl: Decimal | None = None
    hedging_cost: HedgingCostView | Decimal | None = None  # a bare total from daemons before the decomposition
    delta_by_source: dict[str, Decimal] = {}  # from daemons that value options and inverse contracts
    gamma: float | None = None
    vega: float | None = None
    greeks_source: str | None = None
    unvalued: list[str] = []


class StatusView(_View):
    """The parts of ``/status`` that the summary shows."""

    mode: str | None = None
    trading_state: str
    reason: str = ""
    source: str = ""
    since: float | None = None
    latches: list[str] = []
    ready: bool | None = None
    not_ready: list[str] = []
    underlyings: dict[str, UnderlyingView] = {}
    open_orders: list[Any] = []
    fills: int | None = None
    duplicate_fills: int | None = None
    fill_echoes: int | None = None
    consecutive_order_errors: int | None = None


class KillAnswer(_View):
    """``POST /kill``'s answer."""

    trading_state: str
    reason: str = ""
    changed: bool | None = None


class ResumeAnswer(_View):
    """``POST /resume``'s answer (200 resumed, 409 refused)."""

    trading_state: str
    reason: str = ""
    resumed: bool | None = None
    detail: str = ""


def _when(since: float | None, now: float) -> str:
    """``since start``, or the UTC time and how long ago (``since`` is epoch seconds)."""
    if since is None:
        return "since start"
    at = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"since {at} ({_duration(max(0.0, now - since))} ago)"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def _quote(symbol: str | None) -> str:
    """``USDT`` of ``BTC/USDT:USDT``; empty when the symbol does not say."""
    if not symbol or "/" not in symbol:
        return ""
    return symbol.split("/", 1)[1].split(":", 1)[0]


def _amount(value: Decimal | None, unit: str, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    text = f"{value:+f}" if signed and value else f"{value:f}"
    return f"{text} {unit}".rstrip()


def _cost_rows(cost: HedgingCostView, quote: str) -> list[tuple[str, str]]:
    parts = [f"{kind} {value:f}" for kind, value in (("fee", cost.fee), ("spread", cost.spread),
                                                      ("slippage", cost.slippage), ("funding", cost.funding))
             if value is not None]
    rows = [("hedging cost", f"{_amount(cost.total, quote)}  ({' + '.join(parts)})" if parts
             else _amount(cost.total, quote))]
    gaps = [f"{count} {text}" for count, text in (
        (cost.unvalued_fees, "fees not valued (no fresh conversion price)"),
        (cost.unmeasured_fills, "fills without a decision quote")) if count]
    if gaps:  # left out of the total: it is a lower bound
        rows.append(("not counted", ", ".join(gaps)))
    return rows


_BOOK_SOURCES = ("inverse", "option", "collateral")  # a book with one of these shows its breakdown


def _book_rows(name: str, u: UnderlyingView) -> list[tuple[str, str]]:
    """Delta by source, gamma and vega of a book holding options, inverse contracts or collateral."""
    if not any(source in u.delta_by_source for source in _BOOK_SOURCES):
        return []
    parts = [f"{source} {value:+f}" for source, value in u.delta_by_source.items() if value]
    rows = [("delta by source", ", ".join(parts) + f" {name}" if parts else "all zero")]
    if u.gamma is not None:
        greeks = f"gamma {u.gamma:+.3g} {name}/price, vega {u.vega or 0.0:+.3g}/vol point"
        rows.append(("greeks", greeks + (f" ({u.greeks_source})" if u.greeks_source else "")))
    if u.unvalued:
        rows.append(("NOT VALUED", "; ".join(u.unvalued) + " (no hedging until they are)"))
    return rows


def _underlying_lines(name: str, u: UnderlyingView) -> list[str]:
    quote = _quote(u.hedge_symbol)
    band = f"(band ±{u.threshold:f} {name})" if u.threshold is not None else ""
    on = " ".join(part for part in (u.hedge_venue, u.hedge_symbol) if part)
    rows = [
        ("net delta", f"{_amount(u.net_delta, name, signed=True)}  {band}".rstrip()),
        ("hedge position", f"{_amount(u.perp_position, name, signed=True)}  {'on ' + on if on else ''}".rstrip()),
        ("in flight", _amount(u.in_flight, name, signed=True)),
        ("price age", "no price yet" if u.price_age_seconds is None else f"{u.price_age_seconds:.1f} s"),
    ]
    rows.extend(_book_rows(name, u))
    if u.realized_pnl is not None:
        rows.append(("realized PnL", _amount(u.realized_pnl, quote, signed=True)))
    if isinstance(u.hedging_cost, HedgingCostView):
        rows.extend(_cost_rows(u.hedging_cost, quote))
    elif u.hedging_cost is not None:
        rows.append(("hedging cost", _amount(u.hedging_cost, quote)))
    width = max(len(label) for label, _ in rows)
    return [f"{name if i == 0 else '':<6}{label:<{width}}  {text}" for i, (label, text) in enumerate(rows)]


def describe_status(status: dict[str, Any], now: float) -> str:
    """The readable summary of a ``/status`` answer, several lines; ``now`` is epoch seconds."""
    try:
        view = StatusView.model_validate(status)
    except ValidationError:
        return "the daemon's status has an unexpected shape; use --json to see it"
    state = view.trading_state.upper()
    head = f"trading {state} {_when(view.since, now)}"
    if view.reason:
        head += f": {view.reason}"
    if view.source and view.source not in view.reason:
        head += f" (by {view.source})"
    lines = [f"hedgerd{f' ({view.mode} mode)' if view.mode else ''}: {head}"]
    if view.latches:
        lines.append(f"held by: {', '.join(view.latches)} (resume is refused while a latch holds)")
    if view.ready is not None:
        lines.append("ready" if view.ready else f"NOT READY: {'; '.join(view.not_ready) or 'no reason given'}")
    for name, underlying in view.underlyings.items():
        lines += _underlying_lines(name, underlying)
    counts = [f"open orders {len(view.open_orders)}"]
    if view.fills is not None:
        repeats = [f"{label} {count}" for label, count in (("echoes of own fills", view.fill_echoes),
                                                           ("duplicates", view.duplicate_fills)) if count is not None]
        counts.append(f"fills {view.fills}" + (f" ({', '.join(repeats)})" if repeats else ""))
    if view.consecutive_order_errors is not None:
        counts.append(f"consecutive order errors {view.consecutive_order_errors}")
    lines.append(", ".join(counts))
    return "\n".join(lines)


def describe_kill(answer: dict[str, Any], requested: str = "halted") -> str:
    """One line for ``POST /kill``'s answer; ``requested`` is the state asked for (halted, reducing)."""
    try:
        view = KillAnswer.model_validate(answer)
    except ValidationError:
        return "the daemon's answer has an unexpected shape; use --json to see it"
    state = view.trading_state.upper()
    if view.changed is False:  # e.g. REDUCING asked while HALTED: the stricter state stays
        state = f"already {state}" if view.trading_state == requested else f"stays {state}"
    return f"trading {state}" + (f": {view.reason}" if view.reason else "")


def describe_resume(answer: dict[str, Any]) -> str:
    """One line for ``POST /resume``'s answer, refused or not."""
    try:
        view = ResumeAnswer.model_validate(answer)
    except ValidationError:
        return "the daemon's answer has an unexpected shape; use --json to see it"
    state = view.trading_state.upper()
    if view.resumed is False:
        why = f": {view.detail}" if view.detail else ""
        return f"resume refused{why}; trading stays {state}" + (f" ({view.reason})" if view.reason else "")
    return f"trading {state}" + (f" ({view.detail})" if view.detail else "")
