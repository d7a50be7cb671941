"""The pure parts of leadership: roles, the lease that fences sends in time, the lock key.

Nothing here does I/O; :mod:`hedgerd.ha.leader` drives it from the lock connection's answers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """Where an instance stands in its pair."""

    STANDBY = "standby"
    """Competing for the lock; sends nothing (its engine has not started)."""
    TAKING_OVER = "taking_over"
    """Holds the lock, waiting out the previous leader's lease before its first send."""
    ACTIVE = "active"
    """Holds the lock and a valid lease: may send."""
    STEPPED_DOWN = "stepped_down"
    """Could not prove it holds the lock within the lease: sends nothing, exits."""


def derive_lock_key(client_id_prefix: str, ledger: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of the hedger owning ``client_id_prefix``
    on the ledger ``ledger`` (its URL or path).

    Instances of one pair share both, so they compete for one key; two deployments on one
    account must differ in prefix (see the README), so they never block each other. Hashed, so a
    password in the ledger URL never shows in ``pg_locks``.
    """
    digest = hashlib.blake2b(f"hedgerd-ha\0{client_id_prefix}\0{ledger}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_key_parts(key: int) -> tuple[int, int]:
    """``(classid, objid)`` under which PostgreSQL lists the bigint advisory lock ``key`` in
    ``pg_locks`` (high and low 32 bits, as unsigned oids)."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


@dataclass
class Lease:
    """How long the leader may still send: ``length`` seconds from the moment its last
    confirmed heartbeat was *sent* (not answered), on the monotonic clock.

    Counting from the send is conservative: the server confirmed the lock at some moment after
    it, so the lease never outlives the confirmation by more than ``length``.
    """

    length: float
    valid_until: float = -math.inf

    def renew(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` confirmed the lock."""
        self.valid_until = max(self.valid_until, sent_at + self.length)

    def valid(self, now: float) -> bool:
        return now < self.valid_until

    def remaining(self, now: float) -> float:
        """Seconds left (0 when expired)."""
        return max(0.0, self.valid_until - now)


def send_refusal(role: Role, lease: Lease, now: float, lost_reason: str) -> str | None:
    """Why a send at ``now`` must be refused, None if this instance may send.

    Only an ACTIVE leader inside its lease may send; the lease is compared with the clock at
    the send itself, so sends stop at its end even if the heartbeat task never got to run.
    """
    if role is Role.STEPPED_DOWN:
        return f"not the leader: {lost_reason}"
    if role is not Role.ACTIVE:
        return f"not the leader ({role.value})"
    if not lease.valid(now):
        return "leadership lease expired (no heartbeat confirmed the lock in time)"
    return None
