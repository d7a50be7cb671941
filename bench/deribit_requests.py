"""Requests per second the daemon spends of a Deribit account's API credits, live against the
Deribit-protocol simulator (config/deribit-sim.toml; the same calls as on deribit.com).

    python bench/deribit_requests.py --rate 1 --duration 60

Starts the simulator in this process, ``hedgerd run`` as a subprocess, lets the simulator's clients
trade BTC options with the account at ``--rate`` fills/s for ``--duration`` seconds once the daemon is
ready, and prints the requests the simulator answered in that time, by Deribit method. Deribit's
default tier allows about 20 non-matching requests/s per account (credits), shared by every key.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hedgerd.exchange_sim.deribit import DeribitSim
from tests.daemon_proc import running_daemon
from tests.test_e2e_deribit_live import deribit_sim, prepare_workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1.0, help="client option fills per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured")
    args = parser.parse_args()
    counts: Counter[str] = Counter()
    workdir = Path(tempfile.mkdtemp(prefix="deribit-requests-"))
    try:
        with deribit_sim() as sim:
            def count(s: DeribitSim) -> None:
                admit = s.admit

                def counted(method: str) -> None:
                    counts[method] += 1
                    admit(method)
                s.admit = counted  # type: ignore[method-assign]
            sim.call(count)
            config = prepare_workdir(workdir, sim)
            with running_daemon(workdir, args=["--config", str(config)], wait_ready=False) as d:
                d.wait_for(lambda: d.get("/readyz")[0] == 200, 90, "/readyz ready")
                before = Counter(counts)
                sim.set_flow(args.rate)
                time.sleep(args.duration)
                sim.set_flow(0.0)
                spent = counts - before
                orders = len(sim.hedge_labels())
        total = sum(spent.values())
        print(f"{args.rate} option fills/s for {args.duration:.0f} s: {total} requests, "
              f"{total / args.duration:.2f}/s, {orders} hedge orders")
        for method, n in spent.most_common():
            print(f"  {method}: {n}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
