"""Active/standby leadership through a PostgreSQL advisory lock (docs/ha.md).

:mod:`~hedgerd.ha.lease` holds the pure parts (roles, the lease, the lock key, the send check),
:mod:`~hedgerd.ha.postgres` the lock's connection and :mod:`~hedgerd.ha.leader`
:class:`Leadership`, which the daemon runs before and beside the engine.
"""

from hedgerd.ha.leader import Leadership, LeadershipLost, LockSession
from hedgerd.ha.lease import Lease, Role, derive_lock_key, lock_key_parts, send_refusal

__all__ = [
           "Leadership",
           "LeadershipLost",
           "Lease",
           "LockSession",
           "Role",
           "derive_lock_key",
           "lock_key_parts",
           "send_refusal",
]
