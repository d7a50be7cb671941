"""Deribit API v2 JSON shapes of the simulator's orders, trades, positions, tickers and summaries."""

from __future__ import annotations

from decimal import Decimal

from hedgerd.exchange_sim.deribit.instruments import Instrument
from hedgerd.exchange_sim.deribit.venue import FUTURE_MM, DeribitVenue, DOrder, DPosition, DTrade

Json = dict[str, object]


def num(value: Decimal | float) -> float:
    """Deribit sends JSON numbers; Decimals become floats only at the wire."""
    return float(value)


def order_json(order: DOrder) -> Json:
    inst = order.instrument
    out: Json = {
        "order_id": order.order_id, "instrument_name": inst.name, "direction": order.direction,
        "amount": num(order.amount), "filled_amount": num(order.filled),
        "contracts": num(order.amount / inst.contract_size),
        "price": "market_price" if order.price is None else num(order.price),
        "average_price": num(order.average), "order_state": order.state,
        "order_type": order.order_type, "time_in_force": order.time_in_force,
        "post_only": order.post_only, "reject_post_only": order.reject_post_only,
        "reduce_only": order.reduce_only, "label": order.label,
        "creation_timestamp": order.created, "last_update_timestamp": order.updated,
        "commission": num(order.commission), "api": True, "web": False, "is_liquidation": False,
        "replaced": False, "max_show": num(order.amount), "mmp": False, "risk_reducing": False,
        "is_rebalance": False,
    }
    if order.cancel_reason is not None:
        out["cancel_reason"] = order.cancel_reason
    return out


def trade_json(trade: DTrade) -> Json:
    order = trade.order
    inst = order.instrument
    out: Json = {
        "trade_id": trade.trade_id, "trade_seq": trade.trade_seq, "instrument_name": inst.name,
        "order_id": order.order_id, "order_type": order.order_type, "direction": order.direction,
        "amount": num(trade.amount), "contracts": num(trade.amount / inst.contract_size),
        "price": num(trade.price), "index_price": num(trade.index_price),
        "mark_price": num(trade.mark_price), "fee": num(trade.fee), "fee_currency": inst.currency,
        "liquidity": "M" if trade.maker else "T", "timestamp": trade.timestamp,
        "state": order.state, "label": order.label, "post_only": order.post_only,
        "reduce_only": order.reduce_only, "profit_loss": num(trade.profit_loss),
        "tick_direction": 0, "matching_id": None, "self_trade": False, "api": True,
    }
    if trade.iv is not None and trade.underlying is not None:
        out["iv"] = round(trade.iv * 100, 4)
        out["underlying_price"] = round(trade.underlying, 4)
    return out


def position_json(venue: DeribitVenue, inst: Instrument, pos: DPosition) -> Json:
    mark = venue.mark(inst)
    im, mm = venue.margins(inst, pos.size)
    pnl = venue.floating_pnl(inst, pos)
    direction = "zero" if pos.size == 0 else ("buy" if pos.size > 0 else "sell")
    out: Json = {
        "instrument_name": inst.name, "kind": inst.kind, "direction": direction,
        "size": num(pos.size), "average_price": num(pos.average), "mark_price": num(mark),
        "index_price": num(venue.index(inst.currency)), "floating_profit_loss": num(pnl),
        "realized_profit_loss": num(pos.realized), "total_profit_loss": num(pnl + pos.realized),
        "initial_margin": num(im), "maintenance_margin": num(mm),
        "delta": num(venue.position_delta(inst, pos)), "open_orders_margin": 0.0,
        "settlement_price": num(mark), "interest_value": 0.0,
    }
    if inst.is_option:
        greeks = venue.option(inst).greeks
        out["size_currency"] = num(pos.size)
        out["average_price_usd"] = num(pos.average * venue.index(inst.currency))
        out["gamma"] = float(pos.size) * greeks.gamma
        out["vega"] = float(pos.size) * greeks.vega / 100
        out["theta"] = float(pos.size) * greeks.theta / 365
    else:
        out["size_currency"] = num(pos.size / mark)
        out["leverage"] = 50
        out["estimated_liquidation_price"] = _liquidation_or_none(venue, inst, pos)
        out["realized_funding"] = num(pos.funding)
        out["total_funding"] = num(pos.funding)
    return out


def estimated_liquidation_price(venue: DeribitVenue, inst: Instrument, pos: DPosition) -> Decimal | None:
    """Where an inverse future's position would be liquidated, the account's other positions held
    at their current marks: the mark P at which equity falls to the maintenance margin,

        K + S/A - S/P = |S| x mm / P   =>   P = (S + |S| x mm) / (K + S/A)

    with S the signed size (USD), A its average price, mm the futures maintenance rate and
    K = equity - this position's floating PnL - the other positions' maintenance margin (coin).
    None when flat or when no positive price liquidates it (a short backed by more coin than it
    can lose)."""
    if pos.size == 0 or inst.is_option or pos.average <= 0:
        return None
    summary = venue.summary(inst.currency)
    own_mm = venue.margins(inst, pos.size)[1]
    base = summary["equity"] - venue.floating_pnl(inst, pos) - (summary["maintenance_margin"] - own_mm)
    size = pos.size
    denominator = base + size / pos.average
    if denominator == 0:
        return None
    price = (size + abs(size) * FUTURE_MM) / denominator
    return price.quantize(Decimal("0.01")) if price > 0 else None


def _liquidation_or_none(venue: DeribitVenue, inst: Instrument, pos: DPosition) -> float | None:
    price = estimated_liquidation_price(venue, inst, pos)
    return None if price is None else num(price)


def ticker_json(venue: DeribitVenue, inst: Instrument, now_ms: int) -> Json:
    bids, asks = venue.book(inst)
    mark = venue.mark(inst)
    index = venue.index(inst.currency)
    out: Json = {
        "instrument_name": inst.name, "timestamp": now_ms, "state": "open",
        "mark_price": num(mark), "index_price": num(index), "last_price": num(mark),
        "best_bid_price": num(bids[0][0]) if bids else 0.0,
        "best_bid_amount": num(bids[0][1]) if bids else 0.0,
        "best_ask_price": num(asks[0][0]), "best_ask_amount": num(asks[0][1]),
        "min_price": num(bids[-1][0]) if bids else 0.0, "max_price": num(asks[-1][0]),
        "open_interest": 0.0, "settlement_price": num(mark),
        "stats": {"volume": 0.0, "volume_usd": 0.0, "price_change": 0.0, "high": num(mark),
                  "low": num(mark)},
    }
    if inst.is_option:
        opt = venue.option(inst)
        g = opt.greeks
        out["mark_iv"] = round(opt.iv * 100, 4)
        out["bid_iv"] = out["mark_iv"]
        out["ask_iv"] = out["mark_iv"]
        out["underlying_price"] = round(opt.underlying, 4)
        out["underlying_index"] = f"SYN.{inst.currency}-{inst.name.split('-')[1]}"
        out["interest_rate"] = 0.0
        # Deribit's ticker greeks: Black-Scholes delta, gamma per USD, vega and theta in USD
        # per vol point and per day.
        out["greeks"] = {"delta": round(g.delta, 5), "gamma": round(g.gamma, 8),
                         "vega": round(g.vega / 100, 5), "theta": round(g.theta / 365, 5),
                         "rho": 0.0}
    else:
        out["estimated_delivery_price"] = num(index)
        if inst.is_perpetual:
            out["current_funding"] = venue.funding_rate(inst.currency)
            out["funding_8h"] = venue.funding_rate(inst.currency)
            out["interest_value"] = 0.0
    return out


def summary_json(venue: DeribitVenue, currency: str) -> Json:
    out: Json = {key: num(value) for key, value in venue.summary(currency).items()}
    out.update({"currency": currency, "session_rpl": 0.0, "session_upl": 0.0, "fee_balance": 0.0,
                "portfolio_margining_enabled": False, "cross_collateral_enabled": False,
                "margin_model": "segregated_sm", "projected_initial_margin": out["initial_margin"],
                "projected_maintenance_margin": out["maintenance_margin"],
                "projected_delta_total": out["delta_total"], "total_pl": 0.0,
                "limits": {}, "type": "main", "id": 1, "username": "sim", "system_name": "sim"})
    return out
