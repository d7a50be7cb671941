"""hedgerd: a live async delta-hedging daemon for crypto exchanges."""

__version__ = "0.1.0"
