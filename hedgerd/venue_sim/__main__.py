"""``python -m hedgerd.venue_sim``."""

from hedgerd.venue_sim.server import main

raise SystemExit(main())
