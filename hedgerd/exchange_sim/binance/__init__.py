"""Binance's spot and USD-M futures wire protocol over the shared matching engine.

One wire protocol per subpackage. ``server.py`` wires the aiohttp app (dispatch, auth, weights,
faults, listen keys, admin endpoints); ``rest.py``, ``rest_spot.py`` and ``rest_futures.py`` are
the REST handlers and ``routes.py`` their route table; ``streams.py`` the websockets;
``wire.py`` turns engine state into Binance JSON; ``auth.py`` checks HMAC signatures and
timestamps; ``ratelimit.py`` request weights; ``config.py`` the server settings; ``urls.py``
points ccxt at the simulator.
"""
