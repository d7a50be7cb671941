"""Prometheus metrics of the daemon, on a registry of their own (one per daemon instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the scrape and confuse dashboards

# Decision latency is sub-millisecond when nothing blocks; rate-limit waits reach seconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WAIT_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric hedgerd exports. Create one per daemon; tests create their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.fills = Counter("hedgerd_fills", "Fills recorded in the ledger", ["venue", "symbol"], registry=r)
        self.inventory = Gauge("hedgerd_inventory", "Position per venue and asset, as the ledger counts it (base "
                               "units; contracts of a market whose venue gives its instrument)",
                               ["venue", "asset"], registry=r)
        self.net_delta = Gauge("hedgerd_net_delta", "Net delta per underlying (base units)",
                               ["underlying"], registry=r)
        self.net_delta_notional = Gauge("hedgerd_net_delta_notional",
                                        "Net delta per underlying in quote currency", ["underlying"], registry=r)
        self.hedge_band = Gauge("hedgerd_hedge_band", "Hedge band half-width per underlying: the threshold, or the "
                                "adaptive or gamma policy's trigger of its last decision (base units)",
                                ["underlying"], registry=r)
        self.delta = Gauge("hedgerd_delta", "Net delta per underlying by source: spot, linear, inverse, option, "
                           "collateral, hedge, in_flight (base units, hedge ratio applied)",
                           ["underlying", "source"], registry=r)
        self.gamma = Gauge("hedgerd_gamma", "Book gamma per underlying (base units per unit of price)",
                           ["underlying"], registry=r)
        self.vega = Gauge("hedgerd_vega", "Book vega per underlying (quote per vol point)", ["underlying"], registry=r)
        self.greeks_disagreement = Gauge(
            "hedgerd_greeks_disagreement",
            "|options delta by our model - by the venue's greeks| per underlying (base units)", ["underlying"],
            registry=r)
        self.option_quote_age = Gauge("hedgerd_option_quote_age_seconds",
                                      "Age of the oldest option quote among the held options per underlying",
                                      ["underlying"], registry=r)
        self.in_flight = Gauge("hedgerd_in_flight_hedge", "Signed hedge quantity sent and not yet filled (base units)",
                               ["underlying"], registry=r)
        self.hedge_orders = Counter("hedgerd_hedge_orders", "Hedge orders by final or current status",
                                    ["venue", "symbol", "status"], registry=r)
        self.hedge_fees = Counter("hedgerd_hedge_fees", "Fees paid on hedge fills (quote units)",
                                  ["venue"], registry=r)
        # a gauge, not a counter (hedgerd_hedge_cost_total): a running sum since start as in /status,
        # and slippage can be negative; promtool rejects a gauge named _total
        self.hedge_cost = Gauge("hedgerd_hedge_cost",
                                "Hedging cost since start per underlying and kind (fee, spread, slippage, "
                                "funding; quote units; see hedgerd.risk.cost)", ["underlying", "kind"], registry=r)
        self.fee_unvalued = Counter("hedgerd_fee_unvalued",
                                    "Hedge fill fees not valued (conversion price missing or stale); left out "
                                    "of hedgerd_hedge_cost", ["venue", "currency", "reason"], registry=r)
        self.realized_pnl = Gauge("hedgerd_realized_pnl",
                                  "Hedged-book PnL since the ledger began, marked at the hedge mid, net of fees "
                                  "(quote units; see hedgerd.risk.hedge_book_pnl)", ["underlying"], registry=r)
        self.trading_state = Gauge("hedgerd_trading_state", "0 active, 1 reducing, 2 halted", registry=r)
        self.kill_reason = Gauge("hedgerd_kill_reason", "1 for the current kill-switch reason and source",
                                 ["state", "reason", "source"], registry=r)
        self.kill_switch_engagements = Counter("hedgerd_kill_switch_engagements",
                                               "Kill switch engagements by source", ["source"], registry=r)
        self.decision_latency = Histogram("hedgerd_decision_latency_seconds",
                                          "Fill received to order handed to the venue client",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.rate_limit_wait = Histogram("hedgerd_rate_limit_wait_seconds",
                                         "Time spent waiting for the per-venue token bucket",
                                         ["venue"], buckets=WAIT_BUCKETS, registry=r)
        self.price_age = Gauge("hedgerd_price_age_seconds", "Age of the latest price", ["symbol"], registry=r)
        self.venue_errors = Counter("hedgerd_venue_errors", "Venue errors by kind", ["venue", "kind"],
                                    registry=r)
        self.duplicate_fills = Counter("hedgerd_ledger_duplicate_fills",
                                       "Fills ignored because the ledger already had their trade id, other than "
                                       "echoes of our own hedge fills (e.g. inventory fills replayed by a backfill)",
                                       registry=r)
        self.fill_echoes = Counter("hedgerd_ledger_fill_echoes",
                                   "Repeats of our own hedge orders' fills, ignored: each arrives in the order "
                                   "response, the order stream and the trade stream (normal)", registry=r)
        self.foreign_orders = Counter(
            "hedgerd_foreign_orders",
            "Orders with our client-id prefix that this ledger never issued (another hedger on the account: halts)",
            ["venue"], registry=r)
        self.unowned_hedge_trades = Counter(
            "hedgerd_unowned_hedge_trades",
            "Trades on a hedged instrument not placed by this daemon (manual trades, other bots): counted only",
            ["venue", "symbol"], registry=r)
        self.wild_prices = Counter("hedgerd_rejected_prices", "Prices rejected as invalid or wild",
                                   ["symbol", "reason"], registry=r)
        self.ledger_errors = Counter("hedgerd_ledger_errors", "Ledger write or open failures", registry=r)
        self.ledger_commit = Histogram("hedgerd_ledger_commit_seconds",
                                       "Duration of one ledger transaction (group commit), BEGIN to COMMIT",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.up_since = Gauge("hedgerd_start_time_seconds", "Unix time the daemon started", registry=r)
        self.ready = Gauge("hedgerd_ready", "1 when venues are connected, the ledger open and prices fresh",
                           registry=r)

    def render(self) -> bytes:
        """The text exposition format of this registry."""
        return generate_latest(self.registry)
