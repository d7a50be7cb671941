"""Funding payments of a ccxt venue's perpetual positions, for the funding poller
(:mod:`hedgerd.funding`).

Where ccxt offers ``fetchFundingHistory`` (Binance USD-M: ``GET /fapi/v1/income`` with
``incomeType=FUNDING_FEE``) it is paged forward from ``since``. ccxt's Deribit offers neither
that nor a ledger: there the venue's own records are read through ccxt's implicit API,
``private/get_settlement_history_by_currency`` (``type=settlement``), newest first, paged by
``continuation`` back to ``since``: each perpetual's daily session settlement carries its
``funding`` in coin (received positive) and the index then, which values it. Any other venue
without ``fetchFundingHistory`` lists nothing (the connector logs it once): its funding stays
out of the hedging cost, which ``/status`` then understates.
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


def supported(client: CcxtClient) -> bool:
    """Whether funding payments can be listed on this exchange."""
    return client.has("fetchFundingHistory") or getattr(client.exchange, "id", None) == "deribit"


async def fetch_funding(client: CcxtClient, symbols: Sequence[str], since: float | None) -> list[FundingPayment]:
    """Funding payments on the derivative ``symbols`` at or after ``since``, oldest first."""
    derivatives = [s for s in symbols if is_derivative(s)]
    if not derivatives or not supported(client):
        return []
    if not client.has("fetchFundingHistory"):
        return await _deribit_settlements(client, derivatives, since)
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


async def _deribit_settlements(client: CcxtClient, symbols: Sequence[str], since: float | None) -> list[FundingPayment]:
    markets: Mapping[str, Any] = getattr(client.exchange, "markets", None) or {}
    by_id = {markets[s]["id"]: s for s in symbols if s in markets}
    currencies = sorted({str(markets[s].get("settle") or markets[s]["base"]) for s in symbols if s in markets})
    since_ms = None if since is None else int(since * 1000)
    payments: dict[str, FundingPayment] = {}
    for currency in currencies:
        params: dict[str, Any] = {"currency": currency, "type": "settlement", "count": PAGE_LIMIT}
        for _ in range(MAX_PAGES):
            answer = await client.call("read", "privateGetGetSettlementHistoryByCurrency", params)
            result = answer.get("result") if isinstance(answer, Mapping) else None
            page = result.get("settlements") if isinstance(result, Mapping) else None
            if not isinstance(page, list):
                client.report("malformed", f"settlement history without settlements: {answer!r:.200}")
                break
            older = False
            for entry in page:
                if not isinstance(entry, Mapping) or entry.get("type") != "settlement":
                    continue
                symbol = by_id.get(entry.get("instrument_name"))
                stamp = entry.get("timestamp")
                if isinstance(stamp, int | float) and since_ms is not None and stamp < since_ms:
                    older = True
                    continue
                if symbol is None or not entry.get("funding"):  # a session without funding pays nothing
                    continue
                try:
                    payment = _settlement(client.name, symbol, currency, entry)
                except MalformedMessage as exc:
                    client.report("malformed", str(exc))
                    continue
                payments[payment.payment_id] = payment
            token = result.get("continuation") if isinstance(result, Mapping) else None
            if older or not page or token in (None, "", "none"):
                break
            params = {**params, "continuation": token}
    return sorted(payments.values(), key=lambda p: (p.ts, p.payment_id))


def _settlement(venue: str, symbol: str, currency: str, entry: Mapping[str, Any]) -> FundingPayment:
    stamp = entry.get("timestamp")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or stamp <= 0:
        raise MalformedMessage(f"settlement without a timestamp: {entry!r:.200}")
    ts = float(stamp) / 1000.0
    return FundingPayment(venue=venue, symbol=symbol, payment_id=FundingPayment.key(symbol, ts),
                          amount=to_decimal(entry.get("funding"), "settlement funding"), currency=currency, ts=ts,
                          price=to_decimal(entry.get("index_price"), "settlement index_price", positive=True))
