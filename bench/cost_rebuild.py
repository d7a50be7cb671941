"""How long the cost book's rebuild at start takes on a large ledger (hedgerd.cost_book.CostBook.rebuild).

Usage: python bench/cost_rebuild.py [--client-fills N] [--hedge-fills N] [--funding N] [--dir DIR]

Writes a ledger through the real InventoryLedger (client fills on the inventory venue, hedge
intents with decision quotes and their fills on the perp, funding payments), closes it, then
times a fresh open and the rebuild: one scan of the fills journal (client fills included: no
index serves the filter) plus the intents' decision quotes and the funding table.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from hedgerd.cost_book import CostBook
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, FundingPayment, Side

PERP = "BTC/USDT:USDT"


async def write(path: Path, client_fills: int, hedge_fills: int, funding: int) -> None:
    async with InventoryLedger(path) as ledger:
        pending = []
        every = max(1, client_fills // max(1, hedge_fills))
        for i in range(client_fills):
            pending.append(ledger.submit_fill(Fill("spot", f"c{i}", "BTC/USDT", Side.BUY, Decimal("0.01"),
                                                   Decimal(60000), ts=float(i))))
            if i % every == 0 and hedge_fills:
                hedge_fills -= 1
                intent = await ledger.new_intent(underlying="BTC", venue="perp", symbol=PERP, side=Side.SELL,
                                                 amount=Decimal("0.01"), created_at=float(i),
                                                 decision_mid=Decimal(60000), decision_half_spread=Decimal(6))
                pending.append(ledger.submit_fill(Fill("perp", f"h{i}", PERP, Side.SELL, Decimal("0.01"),
                                                       Decimal(59990), Decimal("0.3"), "USDT", float(i),
                                                       client_order_id=intent.client_order_id)))
            if len(pending) >= 4096:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await ledger.costs.record_funding([FundingPayment("perp", PERP, f"f{k}", Decimal("-1.5"), "USDT", 28800.0 * k)
                                    for k in range(funding)])


async def rebuild(path: Path) -> tuple[float, float, CostBook]:
    started = time.perf_counter()
    async with InventoryLedger(path) as ledger:
        opened = time.perf_counter()
        book = CostBook(Metrics(), {})
        book.track("BTC", "perp", PERP)
        await book.rebuild(ledger)
        done = time.perf_counter()
    return opened - started, done - opened, book


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client-fills", type=int, default=1_000_000)
    parser.add_argument("--hedge-fills", type=int, default=20_000)
    parser.add_argument("--funding", type=int, default=1_095)  # a year of 8-hourly payments
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = Path(directory) / "ledger.sqlite"
        t0 = time.perf_counter()
        asyncio.run(write(path, args.client_fills, args.hedge_fills, args.funding))
        print(f"wrote {args.client_fills} client fills, {args.hedge_fills} hedge fills, {args.funding} funding "
              f"payments in {time.perf_counter() - t0:.1f} s ({path.stat().st_size / 2**20:.0f} MiB)")
        for run in range(3):
            opened, rebuilt, book = asyncio.run(rebuild(path))
            cost = book.by_underlying["BTC"]
            print(f"run {run + 1}: open {opened:.2f} s, rebuild {rebuilt:.2f} s "
                  f"(fee {cost.fee}, spread {cost.spread}, slippage {cost.slippage}, funding {cost.funding})")


if __name__ == "__main__":
    main()
