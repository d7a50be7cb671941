"""Funding payments of a ccxt venue's perpetual positions, for the funding poller
(:mod:`hedgerd.funding`).

Where ccxt offers ``fetchFundingHistory`` (Binance USD-M: ``GET /fapi/v1/income`` with
``incomeType=FUNDING_FEE``) it is paged forward from ``since``. ccxt's Deribit offers neither
that nor a ledger, so a venue without it lists nothing (logged once): its funding stays out of
the hedging cost, which ``/status`` then understates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hedgerd.connectors.ccxt.client import CcxtClient
from hedgerd.connectors.ccxt.convert import MalformedMessage, to_decimal
from hedgerd.models import FundingPayment, is_derivative

PAGE_LIMIT = 1000  # Binance's largest income page
MAX_PAGES = 50


def _payment(venue: str, symbol: str, entry: Any) -> FundingPayment:
    if not isinstance(entry, Mapping):
        raise MalformedMessage(f"funding entry is not an object: {entry!r}")
    stamp = entry.get("timestamp")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or stamp <= 0:
        raise MalformedMessage(f"funding entry without a timestamp: {entry.get('id')!r}")
    currency = entry.get("code")
    if not isinstance(currency, str) or not currency:
        raise MalformedMessage(f"funding entry without a currency: {entry.get('id')!r}")
    payment_id = entry.get("id")
    ts = float(stamp) / 1000.0
    return FundingPayment(venue=venue, symbol=symbol, amount=to_decimal(entry.get("amount"), "funding amount"),
                          currency=currency, ts=ts,
                          payment_id=FundingPayment.key(symbol, ts, str(payment_id) if payment_id else None))


async def fetch_funding(client: CcxtClient, symbols: Sequence[str], since: float | None) -> list[FundingPayment]:
    """Funding payments on the derivative ``symbols`` at or after ``since``, oldest first."""
    derivatives = [s for s in symbols if is_derivative(s)]
    if not derivatives or not client.has("fetchFundingHistory"):
        return []
    payments: dict[str, FundingPayment] = {}
    for symbol in derivatives:
        cursor = None if since is None else max(0, int(since * 1000))
        for _ in range(MAX_PAGES):
            page = list(await client.call("read", "fetch_funding_history", symbol, cursor, PAGE_LIMIT) or ())
            stamps = []
            for entry in page:
                try:
                    payment = _payment(client.name, symbol, entry)
                except MalformedMessage as exc:
                    client.report("malformed", str(exc))
                    continue
                payments[payment.payment_id] = payment
                stamps.append(payment.ts)
            if len(page) < PAGE_LIMIT or not stamps:
                break
            cursor = int(max(stamps) * 1000) + 1
    return sorted(payments.values(), key=lambda p: (p.ts, p.payment_id))
