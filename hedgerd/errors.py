"""Venue error taxonomy: the executor decides retry vs. halt from the class alone.

Connectors translate their native errors (ccxt exception classes, simulator faults) into
these, so the executor never needs to know which venue it is talking to.
"""

from __future__ import annotations


class VenueError(Exception):
    """Base class of every error raised by a venue connector."""

    kind = "error"


class TransientVenueError(VenueError):
    """The request certainly did not take effect and may be retried after a back-off."""

    kind = "transient"


class OrderOutcomeUnknown(VenueError):
    """The request may or may not have taken effect (timeout, dropped connection).

    Never retry an order after this without first looking it up by client order id.
    """

    kind = "unknown_outcome"


class RateLimited(TransientVenueError):
    """The venue refused the request for rate reasons; wait ``retry_after`` seconds."""

    kind = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalOrderError(VenueError):
    """The venue rejected the order for a reason a retry cannot fix."""

    kind = "fatal"


class InsufficientFunds(FatalOrderError):
    kind = "insufficient_funds"


class InvalidOrder(FatalOrderError):
    kind = "invalid_order"


class PostOnlyRejected(InvalidOrder):
    """A post-only order would have taken liquidity and was refused (Binance -5022, Deribit
    11054 post_only_reject): the book moved through its price; reprice, it is no error."""

    kind = "post_only_rejected"


class ReduceOnlyRejected(InvalidOrder):
    """A reduce-only order refused because it would grow the position (Binance -2022, Deribit
    11030 reduce_only): the position moved since the order was decided."""

    kind = "reduce_only_rejected"


class AuthError(FatalOrderError):
    """Bad or missing credentials, or a permission the key does not have."""

    kind = "auth"


class DuplicateOrder(VenueError):
    """More than one order on the venue carries one client order id (a non-unique id such as a
    Deribit label, placed twice by a transport re-send): the position may be doubled.

    Never retried or resolved automatically; ``client_order_id`` names the id for the operator.
    """

    kind = "duplicate_order"

    def __init__(self, message: str, client_order_id: str, venue_order_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.client_order_id = client_order_id
        self.venue_order_ids = venue_order_ids


class OrderNotFound(VenueError):
    """The venue does not know an order with that id."""

    kind = "order_not_found"


class ConfigError(Exception):
    """Invalid configuration; ``path`` is the dotted path of the offending field."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason
