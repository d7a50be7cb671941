"""The inventory ledger: a durable journal of fills, hedge intents and order states (a SQLite file,
or PostgreSQL: :mod:`hedgerd.ledger.storage`), with positions held in memory (see
:mod:`hedgerd.ledger.ledger`)."""

from hedgerd.ledger.journal import aggregate_journal
from hedgerd.ledger.ledger import (
    CLIENT_ID_MAX_LEN,
    CLIENT_ID_PATTERN,
    CommitHook,
    InventoryLedger,
    PreparedIntent,
)
from hedgerd.ledger.storage import LedgerError

__all__ = ["CLIENT_ID_MAX_LEN", "CLIENT_ID_PATTERN", "CommitHook", "InventoryLedger", "LedgerError", "PreparedIntent",
           "aggregate_journal"]
