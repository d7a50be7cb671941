"""Order sizing shared by the policies and the executor: limits, venue minimums and rounding.

:func:`size_order` turns a policy's wished order into one the limits and the venue accept:
every clamp and the rounding only ever *shrink* the order, so the sized order never overshoots
the wish and never takes ``|perp position|`` beyond ``max_position`` (an order that shrinks an
already oversized position is allowed). :func:`round_down` and :func:`round_price` are also
used by the executor to fit amounts and limit prices to the market's steps.
:func:`size_inverse` converts a coin amount into whole contracts of an inverse (USD-sized)
contract, rounding the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hedgerd.instruments import InstrumentKind
from hedgerd.models import ZERO, MarketInfo, Side
from hedgerd.policy.base import HedgeLimits


def round_down(amount: Decimal, step: Decimal | None) -> Decimal:
    """Round ``amount`` toward zero to a multiple of ``step`` (like ``decimal.ROUND_DOWN``).

    No rounding when ``step`` is None or not positive. Exact: uses the Decimal remainder.
    """
    if step is None or step <= 0:
        return amount
    return amount - amount % step  # Decimal % keeps the dividend's sign: truncates toward zero


def round_price(price: Decimal, step: Decimal | None, side: Side) -> Decimal:
    """Round a limit price to ``step`` on the safe side of the cap.

    A buy limit is a ceiling, so it rounds down (never pay more than the cap); a sell limit is
    a floor, so it rounds up (never sell below it). No rounding when ``step`` is None or not
    positive. Raises ValueError for a non-positive price or one that rounds to zero.
    """
    if not price > 0:
        raise ValueError(f"price must be positive, got {price}")
    if step is None or step <= 0:
        return price
    floor = price - price % step
    rounded = floor if side is Side.BUY or floor == price else floor + step
    if rounded <= 0:
        raise ValueError(f"price {price} rounds to zero with step {step}")
    return rounded


@dataclass(frozen=True, slots=True)
class SizedOrder:
    """Result of :func:`size_order`.

    ``signed_amount`` is in base units and a whole number of contract steps; it is zero when
    the order is held, and then ``hold_reason`` says why. ``clamped_by`` names the limits that
    shrank the order (``max_order``, ``max_amount``, ``max_position``).
    """

    signed_amount: Decimal
    clamped_by: tuple[str, ...] = ()
    hold_reason: str | None = None


def base_step(market: MarketInfo | None) -> Decimal | None:
    """The amount step in base units (``amount_step`` contracts x ``contract_size``), or None."""
    if market is None or market.amount_step <= 0:
        return None
    return market.amount_step * market.contract_size


def size_order(desired: Decimal, perp_position: Decimal, limits: HedgeLimits, market: MarketInfo | None,
               *, price: Decimal | None = None) -> SizedOrder:
    """Turn a wished signed order (base units) into one the limits and the venue accept.

    Steps, each of which can only shrink ``|order|``:

    1. clamp to ``limits.max_order`` and to the venue's ``max_amount`` (contracts);
    2. clamp so that ``|perp_position + order| <= limits.max_position``; an order that shrinks
       ``|perp_position|`` is never cut by this (it moves an oversized position back in);
    3. round toward zero to the market's step in base units.

    Then hold when the result is zero, below ``limits.min_order``, below the venue's
    ``min_amount`` (contracts) or, when it has one, below its ``min_notional`` at ``price``
    (no price -> hold: fail closed). Without a market there is no step and no venue minimum.
    """
    if desired == 0:
        return SizedOrder(ZERO, hold_reason="nothing to do")
    sign = 1 if desired > 0 else -1
    size = abs(desired)
    clamped_by: list[str] = []

    if size > limits.max_order:
        size = limits.max_order
        clamped_by.append("max_order")
    if market is not None and market.max_amount is not None:
        venue_max = market.max_amount * market.contract_size
        if size > venue_max:
            size = venue_max
            clamped_by.append("max_amount")

    # How far the position may move in the order's direction before |position| > max_position.
    # Negative when already beyond the cap on that side: nothing may be added there.
    room = limits.max_position - sign * perp_position
    if size > room:
        size = max(room, ZERO)
        clamped_by.append("max_position")

    size = round_down(size, base_step(market))
    clamps = tuple(clamped_by)
    if size <= 0:
        return SizedOrder(ZERO, clamps, "nothing left after limits and rounding")
    if size < limits.min_order:
        return SizedOrder(ZERO, clamps, f"{size} below min_order {limits.min_order}")
    if market is not None:
        contracts = size / market.contract_size
        if contracts < market.min_amount:
            return SizedOrder(ZERO, clamps,
                              f"{contracts} contracts below venue min_amount {market.min_amount}")
        if market.min_notional > 0:
            if price is None:
                return SizedOrder(ZERO, clamps, "no price to check the venue min_notional")
            if size * price < market.min_notional:
                return SizedOrder(ZERO, clamps,
                                  f"notional {size * price} below venue min_notional {market.min_notional}")
    return SizedOrder(size * sign, clamps)


def reduces_position(perp_position: Decimal, signed_amount: Decimal) -> bool:
    """True when the order shrinks ``|perp_position|`` without flipping its sign."""
    if perp_position == 0 or signed_amount == 0:
        return False
    return (perp_position > 0) != (signed_amount > 0) and abs(signed_amount) <= abs(perp_position)



def venue_contracts(amount: Decimal, market: MarketInfo | None) -> tuple[Decimal, Decimal]:
    """(contracts to request for ``amount``, the same in the ledger's unit): rounded down to the
    market's amount step and capped at its ``max_amount``; unchanged without a market.

    ``amount`` is in the market's ledger unit: contracts when it has an ``instrument`` (the two
    figures are then the same), else base units.
    """
    if market is None:
        return amount, amount
    if market.instrument is not None:
        contracts = round_down(amount, market.amount_step)
        if market.max_amount is not None and contracts > market.max_amount:
            contracts = round_down(market.max_amount, market.amount_step)
        return contracts, contracts
    contract_size = market.contract_size if market.contract_size > 0 else Decimal(1)
    contracts = round_down(amount / contract_size, market.amount_step)
    if market.max_amount is not None and contracts > market.max_amount:
        contracts = round_down(market.max_amount, market.amount_step)
    return contracts, contracts * contract_size


@dataclass(frozen=True, slots=True)
class InverseOrder:
    """A coin amount expressed on an inverse contract (see :func:`size_inverse`).

    ``contracts`` is signed and a multiple of the contract step; ``usd_amount`` is
    ``contracts x contract_size`` (quote units, what Deribit calls the amount); ``coin`` is
    ``usd_amount / mark``, the delta the order really carries: never more than was asked.
    """

    contracts: Decimal
    usd_amount: Decimal
    coin: Decimal


def size_inverse(coin: Decimal, mark: Decimal, contract_size: Decimal,
                 contract_step: Decimal = Decimal(1)) -> InverseOrder:
    """Express a signed ``coin`` amount (underlying units) as contracts of an inverse contract.

    ``contract_size`` is in quote per contract (10 USD on Deribit BTC-PERPETUAL) and ``mark``
    in quote per coin: ``coin x mark`` USD is ``coin x mark / contract_size`` contracts,
    rounded toward zero to ``contract_step`` contracts like every other order, so the order
    never carries more delta than asked. Raises ValueError for a non-positive mark or size.
    """
    if not mark > 0:
        raise ValueError(f"mark must be positive, got {mark}")
    if not contract_size > 0:
        raise ValueError(f"contract_size must be positive, got {contract_size}")
    contracts = round_down(coin * mark / contract_size, contract_step)
    usd_amount = contracts * contract_size
    return InverseOrder(contracts=contracts, usd_amount=usd_amount, coin=usd_amount / mark)


def policy_market(market: MarketInfo | None) -> MarketInfo | None:
    """The market a policy sizes in base units with: None for an inverse contract, whose
    ``contract_size`` is in quote (it is converted by :func:`hedge_order_amount` afterwards)."""
    if market is not None and market.instrument is not None and market.instrument.kind is InstrumentKind.INVERSE:
        return None
    return market


def hedge_order_amount(coin: Decimal, market: MarketInfo | None, mark: Decimal) -> Decimal:
    """A policy's order of ``coin`` (positive, base units) in the hedge market's ledger unit.

    Legacy markets (no instrument) count base units: unchanged. Linear contracts: ``coin /
    contract_size``, exact since :func:`size_order` rounded to the step in base units. Inverse:
    :func:`size_inverse` at ``mark``, rounded down to the amount step; zero when that leaves
    nothing or less than the venue's ``min_amount`` (the caller holds).
    """
    if market is None or market.instrument is None:
        return coin
    if market.instrument.kind is not InstrumentKind.INVERSE:
        return coin / market.contract_size
    step = market.amount_step if market.amount_step > 0 else Decimal(1)
    # quantized to the step's exponent: the division leaves 27091.000000000000000000000 otherwise
    contracts = size_inverse(coin, mark, market.contract_size, step).contracts.quantize(step)
    if market.max_amount is not None and contracts > market.max_amount:
        contracts = round_down(market.max_amount, step)
    return contracts if contracts >= market.min_amount and contracts > 0 else ZERO
