"""What the hedge PnL book costs at startup and per fill (hedgerd/pnl_book.py).

Usage: python bench/pnl_replay.py [--hedge-fills N] [--other-fills M] [--runs R]

Builds a ledger of N hedge fills (a short perpetual position traded around a level, crossing
zero now and then, as a hedger's is) among M inventory fills, then times, for R runs, what the
engine's start does: replaying the hedge instrument's journaled fills into both methods' books
(``PnlBook.track`` over ``InventoryLedger.symbol_trades``), and the per-fill cost of
``PositionPnl.fill``. Prints the open FIFO lots at the end (the memory the book keeps).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, Side
from hedgerd.pnl_book import PnlBook
from hedgerd.risk.realized import PositionPnl

PERP, SPOT = "BTC/USDT:USDT", "BTC/USDT"


def hedge_path(count: int, rng: random.Random) -> list[tuple[Decimal, Decimal]]:
    """(signed amount, price) of ``count`` hedge fills around a short of about 2 BTC."""
    out: list[tuple[Decimal, Decimal]] = []
    position, price = Decimal(0), 60_000.0
    for _ in range(count):
        price *= 1 + rng.gauss(0, 0.0005)
        target = Decimal(-2) + Decimal(rng.randint(-250, 250)) / 100
        step = max(min(target - position, Decimal("0.5")), Decimal("-0.5")) or Decimal("0.01")
        out.append((step, Decimal(f"{price:.1f}")))
        position += step
    return out


async def build(path: Path, hedge: list[tuple[Decimal, Decimal]], others: int) -> None:
    async with InventoryLedger(path, batch_max=4096) as ledger:
        futures = []
        n_other = 0
        for i, (signed, price) in enumerate(hedge):
            side = Side.BUY if signed > 0 else Side.SELL
            futures.append(ledger.submit_fill(Fill("perp", f"h{i}", PERP, side, abs(signed), price,
                                                   Decimal(0), None, 1.7e9 + i)))
            while n_other < others * (i + 1) // len(hedge):
                futures.append(ledger.submit_fill(Fill("spot", f"c{n_other}", SPOT, Side.BUY, Decimal("0.05"),
                                                       price, Decimal(0), None, 1.7e9 + i)))
                n_other += 1
            if len(futures) >= 8192:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hedge-fills", type=int, default=100_000)
    parser.add_argument("--other-fills", type=int, default=900_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    hedge = hedge_path(args.hedge_fills, random.Random(1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.sqlite"
        started = time.perf_counter()
        await build(path, hedge, args.other_fills)
        print(f"ledger: {args.hedge_fills} hedge + {args.other_fills} other fills, "
              f"built in {time.perf_counter() - started:.1f} s")
        replays = []
        async with InventoryLedger(path) as ledger:
            for _ in range(args.runs):
                book = PnlBook(Metrics(), ledger.position, lambda: "fifo")
                started = time.perf_counter()
                book.track("BTC", "perp", PERP, ledger.symbol_trades("perp", PERP))
                replays.append(time.perf_counter() - started)
            pnl = book.by_underlying["BTC"]
            print(f"replay at startup: median {statistics.median(replays):.2f} s over {args.runs} runs "
                  f"({statistics.median(replays) / args.hedge_fills * 1e6:.1f} us per hedge fill, read included)")
            print(f"open position {pnl.average.position}, FIFO lots kept: {len(pnl.fifo.lots)}")
    fresh = PositionPnl()
    started = time.perf_counter()
    for signed, price in hedge:
        fresh.fill(signed, price)
    per_fill = (time.perf_counter() - started) / len(hedge)
    print(f"per fill, both methods: {per_fill * 1e6:.1f} us")


if __name__ == "__main__":
    asyncio.run(main())
