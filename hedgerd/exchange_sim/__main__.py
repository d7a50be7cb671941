"""``python -m hedgerd.exchange_sim``."""

from hedgerd.exchange_sim.binance.server import main

raise SystemExit(main())
