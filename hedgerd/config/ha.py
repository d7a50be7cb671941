"""The ``ha`` section: an active/standby pair elected through a PostgreSQL advisory lock.

How leadership, the lease and the takeover wait fit together is in docs/ha.md; the lock itself
is :mod:`hedgerd.ha`.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# The advisory lock key is a PostgreSQL bigint.
_BIGINT_MIN, _BIGINT_MAX = -(2 ** 63), 2 ** 63 - 1


class HaConfig(BaseModel):
    """Leadership of an active/standby pair (off by default: a single instance sends alone)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)

    enabled: bool = Field(default=False, description=(
        "compete for leadership before trading: only the holder of the lock sends orders"))
    url: SecretStr | None = Field(default=None, description=(
        "postgresql:// URL of the database holding the lock (a secret: HEDGERD_HA__URL or the secrets "
        "file hedgerd_ha__url); default: the ledger's (ledger.url)"))
    lease: float = Field(default=5.0, gt=0, le=300, description=(
        "seconds the leader may send after its last confirmed heartbeat; a new leader waits longer "
        "than this before its first send"))
    heartbeat: float = Field(default=1.0, gt=0, description=(
        "seconds between the leader's checks that it still holds the lock (and a standby's attempts)"))
    lock_key: int | None = Field(default=None, ge=_BIGINT_MIN, le=_BIGINT_MAX, description=(
        "advisory lock key; default: derived from the client-id prefix and the ledger (see docs/ha.md)"))
    connect_timeout: float = Field(default=3.0, gt=0, le=60, description=(
        "seconds to connect to the lock database before trying again"))

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None or not url.get_secret_value():
            return None
        scheme = urlsplit(url.get_secret_value()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(f"must be a postgresql:// URL (got scheme {scheme!r})")
        return url

    @model_validator(mode="after")
    def _timing(self) -> HaConfig:
        # At least two heartbeats per lease, so one slow round trip does not cost the lease.
        if self.heartbeat * 2 > self.lease:
            raise ValueError(f"heartbeat ({self.heartbeat:g} s) must be at most half the lease ({self.lease:g} s)")
        return self

    @property
    def takeover_wait(self) -> float:
        """Seconds a new leader waits after taking the lock before its first send: the lease plus one
        heartbeat, so the previous leader's lease has run out even if its clock ran up to
        heartbeat / (lease + heartbeat) slow (a sixth at the defaults)."""
        return self.lease + self.heartbeat


def ha_problems(ha: HaConfig, sim_venues: Sequence[str], *, ledger_on_postgres: bool) -> list[tuple[str, str]]:
    """Cross-field checks: leadership needs a lock database (its own or the ledger's), and cannot
    cover in-process venues."""
    if not ha.enabled:
        return []
    problems: list[tuple[str, str]] = []
    if ha.url is None and not ledger_on_postgres:
        problems.append(("ha.url", "ha.enabled needs the lock database's postgresql:// URL "
                                   "(HEDGERD_HA__URL or the secrets file hedgerd_ha__url), or a ledger on "
                                   "PostgreSQL (ledger.url), whose database then holds the lock"))
    if sim_venues:
        problems.append(("ha.enabled", "in-process sim venues live and die with one process, so a standby "
                                       f"cannot take them over ({', '.join(sim_venues)}); use ccxt venues"))
    return problems
