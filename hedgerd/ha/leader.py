"""Leadership of an active/standby pair: acquire the lock, wait out the previous lease, keep
proving the lock on a heartbeat, and step down the moment that proof is missing.

The timeline, and why each wait is as long as it is, is in docs/ha.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from hedgerd.clock import Clock
from hedgerd.config import HaConfig
from hedgerd.ha.lease import Lease, Role, send_refusal
from hedgerd.metrics import Metrics

log = structlog.get_logger("hedgerd.ha")


class LockSession(Protocol):
    """The lock's connection (:class:`hedgerd.ha.postgres.PostgresLock`)."""

    async def try_lock(self) -> bool: ...

    async def holds(self) -> bool: ...

    async def close(self) -> None: ...


Connect = Callable[[], Awaitable[LockSession]]


class Leadership:
    """One instance's standing in its pair (see :class:`~hedgerd.ha.lease.Role`).

    :meth:`acquire` returns once this instance is ACTIVE; from then on :meth:`fence` answers
    every send and :attr:`lost` is set (with the reason in :attr:`lost_reason`) when the lease
    could not be renewed. There is no way back from STEPPED_DOWN: the process exits and its
    supervisor restarts it as a standby.
    """

    def __init__(self, config: HaConfig, key: int, clock: Clock, metrics: Metrics, connect: Connect) -> None:
        self.config = config
        self.key = key
        self.clock = clock
        self.metrics = metrics
        self._connect = connect
        self.role = Role.STANDBY
        self.since = clock.time()
        self.lease = Lease(config.lease)
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.db_error: str | None = None  # the last failure to reach the lock database, while standby
        self._session: LockSession | None = None
        self._taken_at = 0.0  # monotonic time the winning try_lock was sent
        self._heartbeat: asyncio.Task[None] | None = None
        self._leader_gauge = metrics.leader.labels(str(key))
        self._leader_gauge.set(0)

    # ------------------------------------------------------------------ the send check
    def fence(self) -> str | None:
        """Why a send now must be refused; None when this instance is the leader within its lease."""
        return send_refusal(self.role, self.lease, self.clock.monotonic(), self.lost_reason)

    # ------------------------------------------------------------------ lifecycle
    async def acquire(self) -> None:
        """Compete until the lock is held, then wait out the previous leader's lease; returns ACTIVE.

        Raises :class:`LeadershipLost` if the lock is lost during the wait."""
        session = await self._take_lock()
        self._session = session
        self.lease.renew(self._taken_at)
        self._set_role(Role.TAKING_OVER)
        self._leader_gauge.set(1)
        wait = self.config.takeover_wait
        log.warning("ha_lock_acquired", lock_key=self.key, takeover_wait=wait,
                    detail="waiting out the previous leader's lease before the first send")
        self._heartbeat = asyncio.create_task(self._beat(session), name="ha-heartbeat")
        waiter = asyncio.create_task(self.lost.wait())
        try:
            await asyncio.wait({waiter}, timeout=wait)
        finally:
            waiter.cancel()
        if self.lost.is_set():
            raise LeadershipLost(self.lost_reason)
        self._set_role(Role.ACTIVE)
        log.warning("ha_active", lock_key=self.key)

    async def _take_lock(self) -> LockSession:
        """Connect and try the lock every heartbeat until it is ours (connection errors retried)."""
        while True:
            session: LockSession | None = None
            try:
                async with asyncio.timeout(self.config.connect_timeout + self.config.heartbeat):
                    session = await self._connect()
                while True:
                    sent = self.clock.monotonic()
                    async with asyncio.timeout(self.config.lease):
                        if await session.try_lock():
                            self._taken_at = sent
                            self.db_error = None
                            return session
                    self.db_error = None
                    await self.clock.sleep(self.config.heartbeat)
            except Exception as exc:  # the database away or refusing: keep competing
                self.db_error = _describe(exc)
                self.metrics.ha_errors.labels("connect").inc()
                log.warning("ha_lock_database_unreachable", error=self.db_error)
                if session is not None:
                    await _close_quietly(session)
                await self.clock.sleep(self.config.heartbeat)

    async def _beat(self, session: LockSession) -> None:
        """Renew the lease every heartbeat; step down when the lock cannot be confirmed in time."""
        while not self.lost.is_set():
            await self.clock.sleep(self.config.heartbeat)
            sent = self.clock.monotonic()
            # The query runs as a task of its own and is abandoned, not awaited, at the lease's end:
            # cancelling it makes the driver ask the silent server to cancel, which can hang too.
            query = asyncio.create_task(session.holds(), name="ha-heartbeat-query")
            done, _ = await asyncio.wait({query}, timeout=self.lease.remaining(sent))
            if not done:
                query.cancel()
                query.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, never raised
                self._lose(f"no heartbeat answer within the lease ({self.config.lease:g} s)")
            elif (exc := query.exception()) is not None:  # the session is gone, and the lock with it
                self._lose(f"lock connection failed: {_describe(exc)}")
            elif query.result():
                self.lease.renew(sent)
            else:
                self._lose("the lock is no longer held by this session")
        await _close_quietly(session)

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self._set_role(Role.STEPPED_DOWN)
        self._leader_gauge.set(0)
        self.metrics.ha_errors.labels("heartbeat").inc()
        self.lost.set()
        log.error("ha_leadership_lost", reason=reason, lock_key=self.key)

    async def close(self) -> None:
        """Release the lock (end the session) and stop the heartbeat."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._session is not None:
            await _close_quietly(self._session)
            self._session = None
        if self.role is not Role.STEPPED_DOWN:
            self._leader_gauge.set(0)

    def _set_role(self, role: Role) -> None:
        self.role = role
        self.since = self.clock.time()

    # ------------------------------------------------------------------ views
    def status(self) -> dict[str, Any]:
        """The ``ha`` part of ``/status``."""
        view: dict[str, Any] = {
            "role": self.role.value, "since": self.since, "lock_key": self.key,
            "lease": self.config.lease, "takeover_wait": self.config.takeover_wait,
            "lease_remaining": round(self.lease.remaining(self.clock.monotonic()), 3)}
        if self.lost_reason:
            view["stepped_down"] = self.lost_reason
        if self.db_error:
            view["database_error"] = self.db_error
        return view


class LeadershipLost(Exception):
    """The lock was lost before this instance became ACTIVE."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


async def _close_quietly(session: LockSession) -> None:
    try:
        async with asyncio.timeout(2.0):
            await session.close()
    except Exception as exc:  # closing a dead connection may fail: the server drops it anyway
        log.info("ha_lock_close_failed", error=_describe(exc))
