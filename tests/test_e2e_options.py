"""End to end: ``hedgerd run --config config/paper-options.toml``, an options book hedged on an inverse perpetual.

The daemon runs as a subprocess on the paper options venue (client flow sped up) for some
seconds. Its reported net delta must equal a recomputation written here from its own reported
positions, option quotes and hedge price, with the formulas of docs/instruments.md (Black-76 on
the quote's forward and mark IV, premium-adjusted by the mark price for coin-settled options;
an inverse position is ``contracts x 10 USD / mid``), not with hedgerd.risk.exposure. It must
also have hedged on the inverse perpetual, in whole contracts.
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import DaemonProcess, running_daemon

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
OPTIONS_VENUE, HEDGE_VENUE, HEDGE_SYMBOL = "sim-options", "sim-inverse", "BTC/USD:BTC"
INVERSE_CONTRACT_USD = 10.0
YEAR = 365.0 * 86_400.0
# The recomputation uses the same inputs as the daemon, so only float rounding and the time each
# side takes as "now" (under a second: an option's delta moves ~1e-5 in it) separate them.
TOLERANCE_BTC = 0.002
# ccxt's option symbol: BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C|P
_OPTION = re.compile(r"^(?P<base>\w+)/(?P<quote>\w+):(?P<settle>\w+)-(?P<date>\d{6})-(?P<strike>[\d.]+)-(?P<cp>[CP])$")


def fast_flow_config(tmp_path: Path) -> Path:
    """config/paper-options.toml with client flow fast enough for a test (and a narrower band)."""
    text = (ROOT / "config" / "paper-options.toml").read_text()
    replaced = {
        "flow_rate = 0.05 ": "flow_rate = 2.0 ",
        'name = "gamma" ': 'name = "fixed" ',
        "threshold = 0.5 ": "threshold = 0.3 ",
        "collateral = 10 ": "initial_trades = 60\ncollateral = 10 ",  # a book from the start
    }
    for old, new in replaced.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "paper-options.toml"
    path.write_text(text)
    return path


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def option_delta(*, call: bool, forward: float, strike: float, years: float, vol: float,
                 mark_coin: float | None) -> float:
    """Black-76 delta per unit of underlying; minus the mark in coin for a coin-settled option."""
    if years <= 0:
        return 0.0
    d1 = (math.log(forward / strike) + 0.5 * vol * vol * years) / (vol * math.sqrt(years))
    delta = norm_cdf(d1) if call else norm_cdf(d1) - 1.0
    return delta - mark_coin if mark_coin is not None else delta


def recompute_net_delta(status: dict[str, Any]) -> tuple[float, float, float]:
    """(options delta, hedge delta, net delta) in BTC from /status's positions, option quotes, the hedge
    instrument's mid and the time the daemon valued them at (``valued_at``)."""
    btc = status["underlyings"]["BTC"]
    quotes = status["option_quotes"]
    mid = float(btc["mid"])
    options = hedge = 0.0
    for key, amount in status["positions"].items():
        venue, _, symbol = key.partition(":")
        contracts = float(amount)
        if venue == HEDGE_VENUE and symbol == HEDGE_SYMBOL:
            hedge += contracts * INVERSE_CONTRACT_USD / mid
            continue
        match = _OPTION.match(symbol)
        if venue != OPTIONS_VENUE or match is None or contracts == 0:
            continue
        quote = quotes[key]
        expiry = datetime.strptime(match["date"] + "08", "%y%m%d%H").replace(tzinfo=UTC).timestamp()  # Deribit's hour
        years = max(expiry - float(status["valued_at"]), 0.0) / YEAR
        coin_settled = match["settle"] == match["base"]
        per_contract = option_delta(call=match["cp"] == "C", forward=float(quote["underlying_price"]),
                                    strike=float(match["strike"]), years=years, vol=float(quote["mark_iv"]),
                                    mark_coin=float(quote["mark_price"]) if coin_settled else None)
        options += contracts * per_contract  # one coin per contract on the paper venue
    in_flight = float(btc["in_flight"])
    return options, hedge, options * float(btc["hedge_ratio"]) + hedge + in_flight


def _settled_status(d: DaemonProcess) -> dict[str, Any] | None:
    """A /status whose positions did not change since the previous read (no fill in between)."""
    first = json.loads(d.get("/status")[1])
    second = json.loads(d.get("/status")[1])
    return second if first["positions"] == second["positions"] and not second["open_orders"] else None


def test_paper_options_daemon_reports_the_net_delta_of_its_own_positions_and_quotes(tmp_path: Path) -> None:
    config = fast_flow_config(tmp_path)
    with running_daemon(tmp_path / "run", args=["--config", str(config)]) as d:
        d.wait_for(lambda: d.total("hedgerd_hedge_orders_total") >= 3 and d.total("hedgerd_fills_total") >= 80, 60,
                   "the initial book, more client flow and hedge orders on the inverse perpetual")
        checked = 0
        for _ in range(50):
            status = _settled_status(d)
            if status is None:
                continue
            time.sleep(0.5)  # the checks see different books
            btc = status["underlyings"]["BTC"]
            held = [k for k, v in status["positions"].items() if k.startswith(f"{OPTIONS_VENUE}:") and Decimal(v)]
            assert held, status["positions"]
            options, hedge, net = recompute_net_delta(status)
            reported = float(btc["net_delta"])
            assert abs(net - reported) <= TOLERANCE_BTC, (net, reported, options, hedge, btc)
            print(f"net delta {reported:+.6f} BTC reported, {net:+.6f} recomputed; options {options:+.4f}, "
                  f"hedge {hedge:+.4f} ({len(held)} options held)")
            assert abs(options - float(btc["delta_by_source"]["option"])) <= TOLERANCE_BTC
            checked += 1
            if checked >= 3:
                break
        assert checked >= 3, "no quiet moment to compare in 50 reads"

        # Hedged on the inverse perpetual, in whole contracts, against the options' delta.
        position = Decimal(status["positions"][f"{HEDGE_VENUE}:{HEDGE_SYMBOL}"])
        assert position != 0 and position == position.to_integral_value()
        if abs(options) > 1.0:  # a book with a real delta is hedged against it
            assert (hedge > 0) == (options < 0), (options, hedge)
        assert abs(float(btc["net_delta"])) < 2.0, btc
        assert status["trading_state"] == "active", status["reason"]
        assert d.total("hedgerd_delta", underlying="BTC", source="option") != 0
