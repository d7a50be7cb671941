"""Binance's spot and USD-M futures wire protocol over the shared matching engine.

One wire protocol per subpackage: ``server.py`` (aiohttp app: REST routes and websocket
streams), ``wire.py`` (engine state to Binance JSON), ``auth.py`` (HMAC signatures, timestamps),
``ratelimit.py`` (request weights), ``urls.py`` (pointing ccxt at the simulator).
"""
