"""The venue's dead-man switch through ccxt: what each exchange offers and how to set it.

* Binance USD-M (``binanceusdm``): ``POST /fapi/v1/countdownCancelAll`` (ccxt's implicit
  ``fapiPrivatePostCountdownCancelAll``), a countdown per symbol; when it runs out Binance
  cancels every open order of the symbol on the account (ours and anyone else's); each call
  restarts it, ``countdownTime = 0`` stops it. Request weight 10.
* Deribit: ``private/enable_cancel_on_disconnect`` works only over a websocket and cancels only
  the orders *placed through that connection* when it closes. hedgerd places its orders with
  ccxt's REST client (ccxt.pro has no ``createOrderWs`` for Deribit), so they belong to no
  websocket connection and cancel-on-disconnect would cancel none of them; Deribit has no HTTP
  equivalent. Deribit therefore reports no switch (docs/ha.md says what covers it instead).
* Anything else: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from hedgerd.connectors.ccxt.client import CcxtClient

#: exchange id -> the name of its dead-man switch, for logs, status and metrics
SWITCHES = {"binanceusdm": "countdownCancelAll"}


def switch_of(exchange_id: str) -> str | None:
    """The dead-man switch an exchange offers hedgerd, None if it offers none usable."""
    return SWITCHES.get(exchange_id)


async def set_countdown(client: CcxtClient, symbols: Sequence[str], window: float) -> None:
    """Binance USD-M: (re)start the countdown of each symbol at ``window`` seconds (0 stops it)."""
    millis = max(0, round(window * 1000))
    for symbol in symbols:
        await client.call("cancel", "fapiPrivatePostCountdownCancelAll",
                          {"symbol": client.exchange.market(symbol)["id"], "countdownTime": millis})
