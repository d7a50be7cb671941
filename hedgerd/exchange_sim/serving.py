"""Binding a simulator's aiohttp app: one place for every wire protocol."""

from __future__ import annotations

from aiohttp import web


async def bind(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port``; returns the runner and the bound port (port 0 picks a free one)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(getattr(site, "_server", None), "sockets", None) or []
    return runner, int(sockets[0].getsockname()[1]) if sockets else port
