"""The exchange simulator's second wire protocol: Deribit API v2 (JSON-RPC over HTTP and the
websocket ``/ws/api/v2``), for ``ccxt.deribit`` and ``ccxt.pro.deribit``.

    async with start_deribit_sim(port=0, seed=1) as sim:
        ex = ccxt.async_support.deribit(sim.ccxt_config())
        await ex.load_markets()

It shares the market model with ``binance/``: the index of each currency is the shared
:class:`~hedgerd.exchange_sim.matching.MatchingEngine`'s ``{BASE}USDT`` mid (zero-drift GBM),
and a simulator given the Binance side's engine sees the same prices. The Deribit account
(orders, fills, positions, margin) lives in :mod:`.venue`, because the shared engine's two
accounts are spot and USDT-margined; Deribit's are coin-margined and inverse.

The model, and where it departs from the real venue:

- Instruments per currency (BTC, ETH): ``{CUR}-PERPETUAL``, a weekly and a monthly dated future
  (Fridays 08:00 UTC) and options on both expiries at five strikes around the index (calls and
  puts), with Deribit's fields. Futures are inverse: amounts in USD, multiples of the contract
  size (10 USD for BTC, 1 USD for ETH), ticks 0.5 / 0.05 USD. Options: amounts in coin
  (minimum 0.1 BTC / 1 ETH), prices in coin, tick 0.0001 up to 0.005 and 0.0005 above.
- Marks: the perpetual marks at the index times one plus a premium (an Ornstein-Uhlenbeck
  process: one hour mean reversion, 0.06 % stationary deviation, the model all simulated
  venues share: :mod:`hedgerd.sim.funding`); funding per 8 h is the
  premium beyond Deribit's +-0.05 % dead zone, accrued continuously on every tick into the
  coin balance (longs pay a positive rate), reported as ``realized_funding`` and booked per
  session (daily 08:00 UTC) in ``private/get_settlement_history_by_currency``
  (:mod:`.settlement`). Dated
  futures mark at the index times a 5 % annual basis, options at Black-76 on the expiry's
  forward with a smile (ATM 55 % BTC / 65 % ETH plus 0.4 times squared log-moneyness), price
  in coin = USD price / forward. Ticker greeks are the Black-Scholes ones; position and
  account deltas of options are the coin-settled (premium-adjusted) delta,
  ``delta - price / forward``, as Deribit documents.
- Book: synthetic around the mark (futures 1 bp half spread, at least a tick, levels of
  200 000 / 50 000 USD; options 3 % of the mark, at least a tick, levels of 5 BTC / 50 ETH; ten
  levels). Market orders and crossing limits walk it as takers; resting limits fill as makers
  at their price by the exchange simulator's one rule (:mod:`.resting`, docs/passive.md): only
  from the market's trade flow that trades through the price (never at the touch), after the
  volume queued ahead when the order joined (none when it improves the touch), in parts
  (whole contracts), the index moving ``adverse_selection_bps`` against each fill. The flow and
  the queue are the engine's parameters in base units, scaled by the index for futures (which
  count USD). ``post_only`` with
  ``reject_post_only`` that would cross answers 11054; without it the price moves one tick
  short of the touch. ``reduce_only`` is cut to the position and rejected (11030) when it
  cannot reduce. Labels are not unique (as on Deribit): look-ups by label return every match.
- Fees (Deribit's schedule): futures and perpetual maker 0 %, taker 0.05 % of the USD
  notional, charged in coin (notional / price); options 0.03 % of the underlying amount,
  capped at 12.5 % of the option's price, in coin, maker or taker.
- Settlement in coin: futures PnL is inverse, ``size * (1/entry - 1/exit)`` coin; option
  premium moves the coin balance at the fill and the option is carried in equity at its mark.
  ``equity = balance + futures floating PnL + options value``. Margin (a simplification of
  Deribit's standard margin): futures 2 % initial / 1 % maintenance of the coin notional;
  short options ``max(0.15 - OTM/index, 0.1) + mark`` initial, ``0.075 + mark`` maintenance;
  open orders reserve the same (option buys their premium). An order that would take
  initial margin past equity answers 10009 ``not_enough_funds``. A future's
  ``estimated_liquidation_price`` is where equity would fall to the maintenance margin, the
  other positions held at their marks (formula in ``wire.estimated_liquidation_price``); null
  when no positive price liquidates it. Nothing is ever liquidated.
- Client flow (:mod:`.flow`, off unless ``option_flow_rate`` > 0): Poisson arrivals on live
  options of the flow currencies, side 50/50, exponential size (mean 0.5 BTC / 5 ETH), filled
  as maker at the touch on an order labelled ``client-flow``; skipped when margin is short.
- Expiry: on the first tick past an expiry, its futures and options deliver at the index:
  open orders are cancelled, futures pay their inverse PnL, options their intrinsic value in
  coin less Deribit's delivery fee (0.015 % of the amount, capped at 12.5 % of the value);
  the instrument leaves ``get_instruments`` (it is listed with ``expired=true``) and orders on
  it answer 10020 ``invalid_or_unsupported_instrument``.
- Errors: HTTP 400 with Deribit's envelope (-32602 invalid params with ``data.reason``,
  10002 qty_too_low, 10004 order_not_found, 11044 not_open_order, 13004 invalid_credentials,
  13009 unauthorized, -32601 method not found); 10028 too_many_requests with HTTP 429 once
  the credits run out (non-matching 500 of 50 000 refilled at 10 000/s; orders and cancels a
  burst of 20 refilled at 5/s). The credits are the account's, spent by HTTP and websocket
  requests alike (auth and subscriptions included; heartbeat answers are free), and Deribit
  ends the session of a client that runs out: the simulator ends every websocket session of
  the account on any 10028, the harsher reading, which a client must survive anyway.
- Faults (the shared :class:`~hedgerd.exchange_sim.faults.FaultConfig`, ``POST /_sim/faults``):
  REST latency, 5xx (executed or not) and accept-then-timeout (hang, drop) on ``private/buy`` /
  ``sell``; websocket sessions ended every ``ws_drop_interval`` (scope ``user``: sessions
  subscribed to a ``user.*`` channel, ``market``: to a ticker), ``user_data_paused`` (order and
  trade notifications lost, sessions open) and ``market_data_paused`` (no tickers). Counters
  in ``DeribitSim.stats``.

Websocket (:mod:`.ws`): every method over the socket, ``public/auth`` (also ccxt.pro's
``client_signature``), ``public|private/subscribe`` to ``user.trades.*``, ``user.orders.*`` and
``ticker.*``, ``set_heartbeat`` with ``test_request`` (a missed one closes the session), and
10028 closing the session.

Not yet modelled (later rounds of issue 21): book, public trades and portfolio channels;
the session settlement's other parts (funding moves the balance at once, the session's futures
PnL is realized at the fill; only the funding is settled per session); the delivery
price as a 30-minute index average (here the index at expiry); futures' delivery fee; new
expiries listed as old ones deliver; duplicated or reordered trade notifications (the
Binance side's ``duplicate_trade_*`` / ``reorder_trade_*`` switches); ``private/edit``.
Orders are kept without a bound (a long soak grows the simulator), trades up
to ``DeribitConfig.trade_history``.
"""

from hedgerd.exchange_sim.deribit.server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DeribitSim,
    DeribitSimConfig,
    start_deribit_sim,
)
from hedgerd.exchange_sim.deribit.venue import DeribitConfig, DeribitError, DeribitVenue

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DeribitConfig",
    "DeribitError",
    "DeribitSim",
    "DeribitSimConfig",
    "DeribitVenue",
    "start_deribit_sim",
]
