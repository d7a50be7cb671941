"""Binance's checks of a new order's parameters, before it meets the book: pure, the same errors
(codes and messages) the exchange answers for each mistake."""

from __future__ import annotations

from decimal import Decimal

from hedgerd.exchange_sim.model import (
    SPOT,
    ApiError,
    Book,
    BookFill,
    MarketKind,
    SymbolFilters,
    is_multiple,
    quantize_down,
)


def check_order_params(kind: MarketKind, filters: SymbolFilters, *, side: str, order_type: str,
                       quantity: Decimal | None, price: Decimal | None, time_in_force: str | None,
                       reduce_only: bool, quote_order_qty: Decimal | None) -> str:
    """Raise :class:`ApiError` for parameters Binance refuses; return the order's time in force."""
    if side not in ("BUY", "SELL"):
        raise ApiError(-1117, "Invalid side.")
    allowed_types = ("MARKET", "LIMIT", "LIMIT_MAKER") if kind == SPOT else ("MARKET", "LIMIT")
    if order_type not in allowed_types:
        raise ApiError(-1116, "Invalid orderType.")
    if kind == SPOT and reduce_only:
        raise ApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
    tif = "GTC"
    if order_type == "LIMIT":
        if time_in_force is None:
            raise ApiError(-1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, "
                                  "or malformed.")
        allowed_tif = ("GTC", "IOC", "FOK") if kind == SPOT else ("GTC", "IOC", "FOK", "GTX")
        if time_in_force not in allowed_tif:
            raise ApiError(-1115, "Invalid timeInForce.")
        tif = time_in_force
    elif order_type == "MARKET":
        tif = "GTC"
        if time_in_force is not None and kind == SPOT:
            raise ApiError(-1106, "Parameter 'timeInForce' sent when not required.")
    if order_type in ("LIMIT", "LIMIT_MAKER"):
        if price is None:
            raise ApiError(-1102, "Mandatory parameter 'price' was not sent, was empty/null, or "
                                  "malformed.")
        if price <= 0 or price < filters.min_price or price > filters.max_price \
                or not is_multiple(price, filters.tick_size):
            raise ApiError(-1013, "Filter failure: PRICE_FILTER")
    if quote_order_qty is not None:
        if kind != SPOT or order_type != "MARKET" or quantity is not None:
            raise ApiError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if quote_order_qty <= 0:
            raise ApiError(-1013, "Invalid quoteOrderQty.")
    else:
        if quantity is None:
            raise ApiError(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or "
                                  "malformed.")
        if quantity <= 0 or quantity < filters.min_qty or quantity > filters.max_qty \
                or not is_multiple(quantity - filters.min_qty, filters.step_size):
            raise ApiError(-1013, "Filter failure: LOT_SIZE")
    return tif


def walk_book(book: Book, side: str, quantity: Decimal | None, limit_price: Decimal | None,
              quote_limit: Decimal | None, step: Decimal) -> list[BookFill]:
    """What an order would trade against ``book`` now: level by level up to its quantity (or
    quote amount) and limit price."""
    levels = book.asks if side == "BUY" else book.bids
    fills: list[BookFill] = []
    remaining = quantity
    quote_left = quote_limit
    for level in levels:
        if limit_price is not None and (
                (side == "BUY" and level.price > limit_price)
                or (side == "SELL" and level.price < limit_price)):
            break
        take = level.qty
        if remaining is not None:
            take = min(take, remaining)
        if quote_left is not None:
            take = min(take, quantize_down(quote_left / level.price, step))
        if take <= 0:
            break
        fills.append(BookFill(level.price, take))
        if remaining is not None:
            remaining -= take
            if remaining <= 0:
                break
        if quote_left is not None:
            quote_left -= take * level.price
    return fills
