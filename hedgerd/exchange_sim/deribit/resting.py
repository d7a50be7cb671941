"""How the Deribit protocol fills resting limit orders: the exchange simulator's one rule
(:class:`hedgerd.exchange_sim.resting.QueueModel`, docs/passive.md), on Deribit's instruments.

Each :meth:`DeribitVenue.tick` is one step of every instrument's trade flow, printing between
the instrument's touches at the previous step and now (sometimes sweeping beyond). A resting
order joins behind the volume already at its price (none when it improves the touch); flow at
its price only works that queue down, flow through it takes the rest of the queue and then fills
the order at its limit as a maker. After a fill the index moves ``adverse_selection_bps``
against the order (for a put the index moving up is what makes the option cheaper).

Amounts: the flow and the queue are the shared parameters in base units (``market_volume``,
``touch_depth``); futures count USD, so they are scaled by the index when the instrument's flow
is first drawn; options count coin, unscaled.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from hedgerd.exchange_sim.resting import QueueModel, Touch

if TYPE_CHECKING:
    from hedgerd.exchange_sim.deribit.instruments import Instrument
    from hedgerd.exchange_sim.deribit.venue import DeribitVenue, DOrder, DTrade

ONE = Decimal(1)
ZERO = Decimal(0)
# Draws of the Deribit side's queues and flows apart from the Binance side's, same parameters.
SEED_OFFSET = 7919


class DeribitResting:
    """The queue positions and trade flow of a :class:`DeribitVenue`'s resting orders."""

    def __init__(self, venue: DeribitVenue) -> None:
        self._venue = venue
        self._queue = QueueModel(venue.engine.config, seed_offset=SEED_OFFSET)
        self._touches: dict[str, Touch] = {}
        self._at = venue.engine.now()

    def touch(self, inst: Instrument) -> Touch:
        """(best bid, best ask) of ``inst`` (bid 0 when an option has none)."""
        bids, asks = self._venue.book(inst)
        return (bids[0][0] if bids else ZERO), asks[0][0]

    def join(self, order: DOrder) -> None:
        """``order`` starts resting (the book as it is now)."""
        inst = order.instrument
        if order.price is None:
            return
        touch = self.touch(inst)
        self._touches.setdefault(inst.name, touch)
        buy = order.direction == "buy"
        scale = ONE if inst.is_option else self._venue.index(inst.currency)
        self._queue.join_level(order.order_id, inst.name, buy, order.price, order.remaining,
                               touch[0] if buy else touch[1], inst.tick_size, scale)

    def queue_ahead(self, order: DOrder) -> Decimal | None:
        """The amount still queued ahead of ``order`` (None: not resting)."""
        return self._queue.queue_ahead(order.order_id)

    def match(self, now: int) -> list[DTrade]:
        """One step: fill the resting orders the flow since the previous step traded through."""
        venue = self._venue
        seconds = max(0, now - self._at) / 1000.0
        self._at = now
        open_orders = venue.open_orders()
        live = {o.order_id for o in open_orders}
        step = self._queue.next_step_of(lambda key: key in live)
        after = {o.instrument.name: self.touch(o.instrument) for o in open_orders}
        done: list[DTrade] = []
        for order in open_orders:
            name = order.instrument.name
            if order.price is None or order.state != "open":
                continue
            before = self._touches.get(name, after[name])
            qty = self._queue.fillable_key(order.order_id, order.remaining, step, before, after[name], seconds,
                                           order.instrument.min_trade_amount)
            if qty <= 0:
                continue
            done.append(venue._execute(order, order.price, qty, maker=True, now=now))
            venue._notify(order)
            self._adverse(order)
        self._touches = {o.instrument.name: self.touch(o.instrument) for o in venue.open_orders()}
        return done

    def _adverse(self, order: DOrder) -> None:
        """Move the index against ``order``: down after a buy fills (up for a bought put)."""
        inst = order.instrument
        falls = (order.direction == "buy") != (inst.is_option and inst.option_type == "put")
        model = self._venue.engine.price_model(f"{inst.currency}USDT")
        self._queue.adverse(model, "BUY" if falls else "SELL")
