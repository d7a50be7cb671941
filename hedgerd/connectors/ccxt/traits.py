"""What differs between the exchanges behind ccxt's unified API, as data keyed by ccxt exchange id.

ccxt unifies method names, not every unit and habit behind them. The connector reads each
difference from this table instead of branching on exchange names:

* **amount unit**: most venues count ccxt ``amount`` s (orders, trades, positions' ``contracts``)
  in contracts. ccxt's Deribit passes Deribit's own amounts through: USD on inverse futures
  (``contractSize`` 10 on BTC-PERPETUAL, so 1 000 = 100 contracts) and coin on options
  (``contractSize`` 1). hedgerd counts contracts everywhere (docs/instruments.md), so the
  connector divides by the contract size on the way in and multiplies on the way out
  (:func:`hedgerd.connectors.ccxt.convert.per_contract`);
* **client order ids**: the parameter an order carries ours in, the one ``fetch_order`` /
  ``cancel_order`` take it as, or (Deribit) the implicit method that lists every order under a
  label;
* **trade listings**: how far one ``fetch_my_trades`` query may reach (Binance USD-M: 7 days),
  parameters that make a page start at the cursor (Deribit returns the newest trades first
  unless ``sorting`` is ``asc``), and whether one query lists a whole settle currency (Deribit:
  an options book is dozens of instruments, and its API credits are per account);
* **price stream**: best bid/ask (``watch_bids_asks``) or whole tickers (``watch_ticker``);
  Deribit's ticker also carries the option marks, IVs and greeks hedgerd needs, so one
  subscription per instrument serves both;
* **spot quote**: the quote of the spot pair an inventory coin is priced and traded in (Binance
  USDT, Deribit USDC);
* **recvWindow**: Binance drops a signed request older than it (set from ``order_timeout``);
* **post-only**: extra parameters of a post-only order beside ccxt's ``postOnly`` (Deribit's
  ``reject_post_only``: refuse a crossing order with 11054 rather than reprice it on its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: How a venue's ccxt amounts count: ``"contracts"``, or ``"contract_size"`` (contracts x contractSize).
AmountUnit = Literal["contracts", "contract_size"]
#: Longest time range one ``fetch_my_trades`` query may cover on Binance USD-M (7 days).
BINANCE_TRADES_WINDOW_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class VenueTraits:
    """How one exchange's ccxt class differs from the unified default (see the module docstring).

    ``amount_unit``: ``"contracts"`` (ccxt amounts are contracts) or ``"contract_size"`` (ccxt
    amounts are contracts x ``contractSize``: Deribit). ``trades_window_ms``: None when one query
    may reach any distance back. ``trades_currency_param``: the parameter with which
    ``fetch_my_trades(None, ...)`` lists every trade of one settle currency (Deribit's own
    ``currency``, which ccxt passes through; None: per symbol only), for the periodic and
    reconciliation listings of venues serving many instruments. ``price_stream``:
    ``"bids_asks"`` uses ``watch_bids_asks`` when the class has it, ``"ticker"`` always one
    ``watch_ticker`` per symbol. ``option_quotes``: the ticker's raw ``info`` carries Deribit's
    ``mark_iv``, ``underlying_price`` and ``greeks``. ``spot_quote``: an inventory coin ``C`` is
    served as the spot pair ``C/<spot_quote>``.
    """

    amount_unit: AmountUnit = "contracts"
    client_id_send_param: str = "clientOrderId"
    client_id_lookup_param: str | None = None
    client_id_label_lookup: str | None = None
    fetch_order_extra: Mapping[str, Any] = field(default_factory=dict)
    trades_window_ms: int | None = BINANCE_TRADES_WINDOW_MS
    my_trades_params: Mapping[str, Any] = field(default_factory=dict)
    trades_currency_param: str | None = None
    price_stream: Literal["bids_asks", "ticker"] = "bids_asks"
    option_quotes: bool = False
    spot_quote: str = "USDT"
    recv_window: bool = False
    post_only_params: Mapping[str, Any] = field(default_factory=dict)


_BINANCE = VenueTraits(client_id_lookup_param="origClientOrderId", recv_window=True)

#: ccxt exchange id -> its traits; an exchange not listed gets :data:`DEFAULT_TRAITS`.
TRAITS: dict[str, VenueTraits] = {
    "binance": _BINANCE,
    "binanceusdm": _BINANCE,
    "binancecoinm": _BINANCE,
    "okx": VenueTraits(client_id_lookup_param="clOrdId"),
    "bybit": VenueTraits(client_id_lookup_param="orderLinkId", fetch_order_extra={"acknowledged": True}),
    # Labels are not unique: every order under one is listed, so a transport re-send is seen.
    # ccxt.deribit passes unknown order parameters through, so the label must be sent as such.
    "deribit": VenueTraits(amount_unit="contract_size", client_id_send_param="label",
                           client_id_label_lookup="privateGetGetOrderStateByLabel",
                           trades_window_ms=None, my_trades_params={"sorting": "asc"},
                           trades_currency_param="currency",
                           price_stream="ticker", option_quotes=True, spot_quote="USDC",
                           post_only_params={"reject_post_only": True}),
}
DEFAULT_TRAITS = VenueTraits()


def traits_for(exchange_id: str | None) -> VenueTraits:
    """The traits of ccxt exchange ``exchange_id`` (the default for one not in :data:`TRAITS`)."""
    return TRAITS.get(exchange_id or "", DEFAULT_TRAITS)
