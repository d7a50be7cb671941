"""The lock's own PostgreSQL connection: a session-level advisory lock and the heartbeat query.

The lock lives exactly as long as this session: a process killed, a connection reset or
terminated (``pg_terminate_backend``) or a server restart releases it on the server.
"""

from __future__ import annotations

import math

import psycopg
import structlog

from hedgerd.ha.lease import lock_key_parts

log = structlog.get_logger("hedgerd.ha")

_HOLDS = ("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
          "AND granted AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1)")


class PostgresLock:
    """One dedicated autocommit connection competing for one advisory lock key."""

    def __init__(self, conn: psycopg.AsyncConnection[tuple[object, ...]], key: int) -> None:
        self._conn = conn
        self.key = key
        self._parts = lock_key_parts(key)

    @classmethod
    async def connect(cls, url: str, key: int, *, connect_timeout: float, lease: float) -> PostgresLock:
        """Connect (within ``connect_timeout`` s); psycopg's errors propagate."""
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(1, math.ceil(connect_timeout)), application_name="hedgerd-ha")
        try:
            # If the leader's host goes silent, the server must end its session (and release the
            # lock) in about a lease rather than after the kernel's two-hour keepalive default.
            seconds = max(1, math.ceil(lease))
            for name, value in (("tcp_keepalives_idle", seconds), ("tcp_keepalives_interval", 1),
                                ("tcp_keepalives_count", seconds), ("tcp_user_timeout", seconds * 1000)):
                await conn.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
            # A frozen process (SIGSTOP, a loop stuck in a call) keeps its TCP connection alive,
            # since its kernel answers keepalives; it stops querying, though. The server then ends
            # the idle session after a lease, when the frozen leader's own lease has run out too.
            try:
                await conn.execute("SELECT set_config('idle_session_timeout', %s, false)", (str(seconds * 1000),))
            except psycopg.errors.UndefinedObject:  # before PostgreSQL 14
                log.warning("ha_idle_session_timeout_unsupported",
                            detail="a frozen leader keeps the lock until it wakes up; use PostgreSQL 14 or later")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, key)

    async def try_lock(self) -> bool:
        """Take the lock if nobody holds it; never waits for it."""
        cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
        row = await cur.fetchone()
        return bool(row and row[0])

    async def holds(self) -> bool:
        """Whether this session still holds the lock (the heartbeat's question to the server)."""
        cur = await self._conn.execute(_HOLDS, self._parts)
        row = await cur.fetchone()
        return bool(row and row[0])

    async def close(self) -> None:
        """End the session, which releases the lock."""
        await self._conn.close()
