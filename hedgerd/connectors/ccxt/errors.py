"""ccxt exceptions on the way into hedgerd: the error taxonomy, secrets stripped, and ccxt's
per-market error tables kept when a venue's urls point at another host."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from hedgerd import errors as herr

Operation = Literal["create", "read", "cancel"]


_URL_QUERY = re.compile(r"((?:https?|wss?)://[^\s?#\"']+)[?#][^\s\"']*")
_SENSITIVE_PAIR = re.compile(
    r"(?i)\b(signature|sign|apikey|api_key|api-key|x-mbx-apikey|secret|password|passphrase|listenkey|token)"
    r"(\"?\s*[=:]\s*\"?)[^\s&\"',}]+")
_LONG_TOKEN = re.compile(r"\b[A-Za-z0-9]{32,}\b")
_MAX_MESSAGE = 500


def sanitize_message(text: str, secrets: Iterable[str] = ()) -> str:
    """Strip what could leak credentials from an error text.

    Query strings (signatures, api keys) are removed from URLs, ``key=value`` pairs with
    sensitive names are masked, long opaque tokens (listen keys, signatures) are masked, and
    any literal credential passed in ``secrets`` is masked.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "<redacted>")
    text = _URL_QUERY.sub(r"\1?<redacted>", text)
    text = _SENSITIVE_PAIR.sub(r"\1\2<redacted>", text)
    text = _LONG_TOKEN.sub("<redacted>", text)
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def retry_after_from_headers(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (case-insensitive); None if absent or not a number."""
    if not isinstance(headers, Mapping):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == "retry-after":
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def map_ccxt_error(exc: BaseException, operation: Operation, *, retry_after: float | None = None,
                   secrets: Iterable[str] = ()) -> herr.VenueError:
    """Translate a ccxt (or transport) exception into the hedgerd error taxonomy.

    The check order matters because ccxt's classes inherit from each other (``OrderNotFound``
    is an ``InvalidOrder``; ``RateLimitExceeded`` and ``RequestTimeout`` are ``NetworkError``\\ s).
    On ``create`` anything that may have reached the matching engine (timeouts, 5xx,
    dropped connections, garbled responses) is :class:`~hedgerd.errors.OrderOutcomeUnknown`;
    on reads and cancels the same is :class:`~hedgerd.errors.TransientVenueError`.
    """
    import ccxt  # here, not at the top: the simulator imports align_ccxt_exceptions without ccxt

    message = f"{type(exc).__name__}: {sanitize_message(str(exc), secrets)}"
    creating = operation == "create"
    if isinstance(exc, ccxt.OrderNotFound):
        return herr.OrderNotFound(message)
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return herr.RateLimited(message, retry_after)
    if isinstance(exc, ccxt.InsufficientFunds):
        return herr.InsufficientFunds(message)
    if isinstance(exc, ccxt.AuthenticationError):  # PermissionDenied, AccountSuspended...
        return herr.AuthError(message)
    if isinstance(exc, ccxt.InvalidNonce):  # timestamp outside recvWindow: certainly rejected
        return herr.TransientVenueError(message)
    if isinstance(exc, ccxt.NetworkError | ccxt.BadResponse):
        return herr.OrderOutcomeUnknown(message) if creating else herr.TransientVenueError(message)
    if creating and _post_only_refused(exc, ccxt):
        return herr.PostOnlyRejected(message)
    if creating and _reduce_only_refused(exc):
        return herr.ReduceOnlyRejected(message)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.ArgumentsRequired | ccxt.NotSupported
                  | ccxt.OperationRejected):
        return herr.InvalidOrder(message)
    if isinstance(exc, ccxt.ExchangeError):  # the venue answered with an error we do not know
        return herr.FatalOrderError(message) if creating else herr.TransientVenueError(message)
    # OperationFailed and transport errors that escaped ccxt's wrapping
    return herr.OrderOutcomeUnknown(message) if creating else herr.TransientVenueError(message)


def _post_only_refused(exc: BaseException, ccxt: Any) -> bool:
    """A post-only order refused because it would take: Binance -5022 (ccxt OrderNotFillable),
    Deribit 11054 post_only_reject (ccxt InvalidOrder)."""
    text = str(exc)
    return (isinstance(exc, ccxt.OrderNotFillable) and "-5022" in text) or "post_only_reject" in text \
        or "11054" in text


def _reduce_only_refused(exc: BaseException) -> bool:
    """A reduce-only order refused because it would grow the position: Binance -2022, Deribit
    11030 with reason reduce_only."""
    text = str(exc)
    return "-2022" in text or ("11030" in text and "reduce_only" in text)


def align_ccxt_exceptions(exchange: Any) -> None:
    """Make ccxt map simulator errors to the same exception classes as on the real hosts.

    ccxt picks its market-specific error table (``exceptions['linear']`` etc.) by matching the
    request url against ``https://fapi.binance.com/`` and friends, so with any other base url
    only the generic table applies and e.g. ``-2019 Margin is insufficient`` becomes a plain
    ExchangeError instead of InsufficientFunds. This copies the table of the instance's default
    market type over the generic one (market-specific entries win, as on the real hosts).
    """
    default_type = str(exchange.options.get("defaultType", "spot"))
    sub_type = exchange.options.get("defaultSubType")
    if default_type in ("swap", "future"):
        market_type = "inverse" if sub_type == "inverse" else "linear"
    elif default_type == "margin":
        market_type = "spot"
    else:
        market_type = default_type
    table = exchange.exceptions.get(market_type)
    if not isinstance(table, dict):
        return
    for section in ("exact", "broad"):
        specific = table.get(section)
        if isinstance(specific, dict):
            merged = dict(exchange.exceptions.get(section) or {})
            merged.update(specific)
            exchange.exceptions[section] = merged
