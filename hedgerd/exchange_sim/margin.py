"""USD-M margin of the simulated Binance account: maintenance margin tiers and liquidation price.

Every USD-M symbol has the leverage brackets below (BTCUSDT's first three, as ``GET
/fapi/v1/leverageBracket`` serves them). The bracket is the one of the position's notional at
the mark: maintenance margin = notional x rate - cum.

Liquidation price of a one-way position (Binance's published formula):

    LP = (WB - TMM + UPNL + cum - amount x entry) / (|amount| x rate - amount)

with ``amount`` signed and ``rate``/``cum`` of the position's bracket. Cross margin: WB is the USDT
wallet less the isolated positions' margin, TMM and UPNL the other cross positions' maintenance
margin and unrealized PnL. Isolated margin: WB is the position's isolated margin, here the
initial margin at entry (``|amount| x entry / leverage``; the simulator has no margin transfers),
TMM = UPNL = 0. A result of 0 or less is reported as 0 (nothing liquidates the position), as
Binance does. The simulator reports it; it does not liquidate.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from hedgerd.exchange_sim.model import ZERO

#: (notional floor, notional cap, maintenance margin rate, cum, initial leverage), as served.
BRACKETS: tuple[tuple[Decimal, Decimal, Decimal, Decimal, int], ...] = (
    (Decimal(0), Decimal(50_000), Decimal("0.004"), Decimal(0), 125),
    (Decimal(50_000), Decimal(600_000), Decimal("0.005"), Decimal(50), 100),
    (Decimal(600_000), Decimal(100_000_000), Decimal("0.025"), Decimal(12_050), 20),
)
_PRICE = Decimal("1e-8")


def bracket(notional: Decimal) -> tuple[Decimal, Decimal]:
    """(maintenance rate, cum) of the bracket holding ``|notional|``."""
    size = abs(notional)
    for _floor, cap, rate, cum, _leverage in BRACKETS:
        if size < cap:
            return rate, cum
    return BRACKETS[-1][2], BRACKETS[-1][3]


def maintenance_margin(notional: Decimal) -> Decimal:
    """Maintenance margin of a position of ``notional`` (either sign) at the mark."""
    rate, cum = bracket(notional)
    return max(ZERO, abs(notional) * rate - cum)


def liquidation_price(amount: Decimal, entry: Decimal, mark: Decimal, wallet: Decimal,
                      others_maintenance: Decimal = ZERO, others_unrealized: Decimal = ZERO) -> Decimal:
    """The formula of the module docstring; 0 for a flat position or when no positive price liquidates it."""
    if not amount:
        return ZERO
    rate, cum = bracket(amount * mark)
    denominator = abs(amount) * rate - amount
    price = (wallet - others_maintenance + others_unrealized + cum - amount * entry) / denominator
    return price.quantize(_PRICE, rounding=ROUND_HALF_EVEN) if price > 0 else ZERO
