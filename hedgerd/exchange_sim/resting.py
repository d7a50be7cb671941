"""How the exchange simulator fills resting limit orders: the rule of the in-process venues
(:class:`hedgerd.sim.market.RestingOrder`, docs/passive.md), on the matcher's variable steps.

Between two requests the matcher steps every mid by the time elapsed; each step is one tick of
the symbol's :class:`~hedgerd.sim.market.TradeFlow` (the rest of the market's aggressive volume
for that many seconds, printing between the touches before and after the step, sometimes
sweeping beyond). A resting order joins behind the volume already at its price (exponential
with mean ``touch_depth`` when it joins at or behind the touch, nothing when it improves it);
flow at its price only works that queue down; flow through its price takes the rest of the
queue first, then fills the order at its limit as a maker. The mid then moves
``adverse_selection_bps`` against the filled order. A price jump (``set_mid``, a test hook)
sweeps every level it crosses: an order the book has crossed fills whole, as before.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from decimal import Decimal

from hedgerd.exchange_sim.model import Book, EngineConfig, MarketKind, Order, PriceModel
from hedgerd.sim.market import RestingOrder, TradeFlow

Touch = tuple[Decimal, Decimal]
ZERO = Decimal(0)


class QueueModel:
    """Queue positions of the resting orders and the trade flow that fills them."""

    def __init__(self, config: EngineConfig) -> None:
        self._seed = config.seed
        self._volume = config.market_volume
        self._depth = float(config.touch_depth)
        self._sweep = config.sweep_probability
        self._adverse = config.adverse_selection_bps / Decimal(10_000)
        self._rng = random.Random(f"hedgerd-exchange-queue/{config.seed}")
        self._queues: dict[tuple[MarketKind, int], RestingOrder] = {}
        self._flows: dict[str, TradeFlow] = {}
        self._step = 0

    def join(self, order: Order, book: Book, tick: Decimal) -> None:
        """``order`` starts resting on ``book`` (the book when it arrived)."""
        buy = order.side == "BUY"
        touch = book.best_bid.price if buy else book.best_ask.price
        improves = order.price > touch if buy else order.price < touch
        queue = ZERO if improves or self._depth <= 0 else Decimal(repr(round(self._rng.expovariate(1 / self._depth),
                                                                             6)))
        self._queues[(order.kind, order.order_id)] = RestingOrder(side_buy=buy, price=order.price,
                                                                  remaining=order.remaining, queue_ahead=queue)
        if order.symbol not in self._flows:
            self._flows[order.symbol] = TradeFlow(self._seed + len(self._flows), self._volume, self._sweep, tick)

    def next_step(self, resting: Mapping[MarketKind, Mapping[int, Order]]) -> int:
        """A new matcher step (one draw of every symbol's flow); forgets orders no longer in ``resting``."""
        gone = [key for key in self._queues if key[1] not in resting.get(key[0], {})]
        for key in gone:
            del self._queues[key]
        self._step += 1
        return self._step

    def adverse(self, model: PriceModel, side: str) -> None:
        """Move the mid against an order that just filled as a maker."""
        if self._adverse > 0:
            model.set(model.mid * float(1 - (self._adverse if side == "BUY" else -self._adverse)))

    def fillable(self, order: Order, step: int, before: Touch | None, after: Touch, seconds: float,
                 step_size: Decimal) -> Decimal:
        """Quantity of ``order`` this step fills. ``before`` None: a price jump (fills whole if the
        book crossed it)."""
        if before is None:
            crossed = after[1] <= order.price if order.side == "BUY" else after[0] >= order.price
            return order.remaining if crossed else ZERO
        resting = self._queues.get((order.kind, order.order_id))
        flow = self._flows.get(order.symbol)
        if resting is None or flow is None:
            return ZERO
        resting.remaining = order.remaining
        return resting.match(flow.at(step, before, after, seconds), step_size)

    def forget(self, order: Order) -> None:
        """``order`` left the book."""
        self._queues.pop((order.kind, order.order_id), None)

