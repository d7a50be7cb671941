"""How the exchange simulator fills resting limit orders: the rule of the in-process venues
(:class:`hedgerd.sim.market.RestingOrder`, docs/passive.md), on the matcher's variable steps.
Both wire protocols use it: the Binance side's matcher here, the Deribit side through
:mod:`hedgerd.exchange_sim.deribit.resting` (one step per simulator tick).

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
from collections.abc import Callable, Hashable, Mapping
from decimal import Decimal

from hedgerd.exchange_sim.model import Book, EngineConfig, MarketKind, Order, PriceModel
from hedgerd.sim.market import RestingOrder, TradeFlow

Touch = tuple[Decimal, Decimal]
ZERO = Decimal(0)
ONE = Decimal(1)


class QueueModel:
    """Queue positions of the resting orders and the trade flow that fills them.

    Protocol-neutral: an order is a hashable ``key`` resting on a ``symbol`` (the Binance side
    keys by market kind and order id, the Deribit side by order id and instrument name); the
    Order-based methods are the Binance side's shorthand. ``scale`` converts the flow's base
    units into the venue's amounts (Deribit's inverse futures count USD: the index price).
    """

    def __init__(self, config: EngineConfig, seed_offset: int = 0) -> None:
        # A second protocol's model draws its own queues and flows (offset), from the same parameters.
        self._seed = config.seed + seed_offset
        self._volume = config.market_volume
        self._depth = float(config.touch_depth)
        self._sweep = config.sweep_probability
        self._adverse = config.adverse_selection_bps / Decimal(10_000)
        self._rng = random.Random(f"hedgerd-exchange-queue/{config.seed}" + (f"/{seed_offset}" if seed_offset else ""))
        self._queues: dict[Hashable, RestingOrder] = {}
        self._symbols: dict[Hashable, str] = {}
        self._flows: dict[str, TradeFlow] = {}
        self._step = 0

    def join(self, order: Order, book: Book, tick: Decimal) -> None:
        """``order`` starts resting on ``book`` (the book when it arrived)."""
        buy = order.side == "BUY"
        touch = book.best_bid.price if buy else book.best_ask.price
        self.join_level((order.kind, order.order_id), order.symbol, buy, order.price, order.remaining,
                        touch, tick)

    def join_level(self, key: Hashable, symbol: str, buy: bool, price: Decimal, remaining: Decimal,
                   touch: Decimal, tick: Decimal, scale: Decimal = ONE) -> None:
        """An order starts resting at ``price`` while its side's best price is ``touch``: behind an
        exponential queue (mean ``touch_depth`` base units, times ``scale``) unless it improves
        the touch."""
        improves = price > touch if buy else price < touch
        queue = ZERO
        if not improves and self._depth > 0:
            queue = Decimal(repr(round(self._rng.expovariate(1 / self._depth), 6))) * scale
        self._queues[key] = RestingOrder(side_buy=buy, price=price, remaining=remaining, queue_ahead=queue)
        self._symbols[key] = symbol
        if symbol not in self._flows:
            self._flows[symbol] = TradeFlow(self._seed + len(self._flows), self._volume * scale, self._sweep,
                                            tick)

    def next_step(self, resting: Mapping[MarketKind, Mapping[int, Order]]) -> int:
        """A new matcher step (one draw of every symbol's flow); forgets orders no longer in ``resting``."""
        return self.next_step_of(lambda key: isinstance(key, tuple) and key[1] in resting.get(key[0], {}))

    def next_step_of(self, live: Callable[[Hashable], bool]) -> int:
        """A new step; forgets the orders whose key ``live`` no longer holds."""
        for key in [k for k in self._queues if not live(k)]:
            self.forget_key(key)
        self._step += 1
        return self._step

    def adverse(self, model: PriceModel, side: str) -> None:
        """Move the mid against an order that just filled as a maker (``side`` BUY/buy or SELL/sell)."""
        if self._adverse > 0:
            buy = side.upper() == "BUY"
            model.set(model.mid * float(1 - (self._adverse if buy else -self._adverse)))

    def fillable(self, order: Order, step: int, before: Touch | None, after: Touch, seconds: float,
                 step_size: Decimal) -> Decimal:
        """Quantity of ``order`` this step fills. ``before`` None: a price jump (fills whole if the
        book crossed it)."""
        if before is None:
            crossed = after[1] <= order.price if order.side == "BUY" else after[0] >= order.price
            return order.remaining if crossed else ZERO
        return self.fillable_key((order.kind, order.order_id), order.remaining, step, before, after, seconds,
                                 step_size)

    def fillable_key(self, key: Hashable, remaining: Decimal, step: int, before: Touch, after: Touch,
                     seconds: float, step_size: Decimal) -> Decimal:
        """Quantity of the order ``key`` (``remaining`` left) that step ``step``'s flow fills: the
        flow between the (bid, ask) ``before`` and ``after`` it, ``seconds`` long."""
        resting = self._queues.get(key)
        flow = self._flows.get(self._symbols.get(key, ""))
        if resting is None or flow is None:
            return ZERO
        resting.remaining = remaining
        return resting.match(flow.at(step, before, after, seconds), step_size)

    def queue_ahead(self, key: Hashable) -> Decimal | None:
        """The volume still queued ahead of order ``key`` (None: not resting here)."""
        resting = self._queues.get(key)
        return None if resting is None else resting.queue_ahead

    def forget(self, order: Order) -> None:
        """``order`` left the book."""
        self.forget_key((order.kind, order.order_id))

    def forget_key(self, key: Hashable) -> None:
        """The order ``key`` left the book."""
        self._queues.pop(key, None)
        self._symbols.pop(key, None)
