"""The ledger's schema (version 4) for SQLite and, beside it, PostgreSQL; the statements the writer
uses, and the migrations of version-1, -2 and -3 SQLite files and version-3 PostgreSQL databases.

Storage layout (schema version 4; older files are migrated when opened). Every Decimal is
stored as TEXT, exactly. Each table or index a commit touches costs it at least one WAL page, so
the tables written on the reaction path (fills, intents, order events) carry no index they can
do without:

* ``fills``: the journal, ``UNIQUE(venue, trade_id)``; a repeat is ignored and counted, as an
  echo when it is a fill of an order this ledger issued (its client order id carries the ledger
  id: the order response, order stream and trade stream each deliver it), else as a duplicate.
* ``intents``: one row per hedge intent, by intent id (no other index: a client order id is
  ``<prefix><ledger id>x<intent id>``, so the rowid finds its intent), carrying the order's last
  state and the quote it was decided on (mid and half spread, for the hedging cost). Open
  intents reload with one range read from ``meta.open_intents_from`` (no open intent has a
  smaller id; raised with the aggregates, lowered in the transaction that reopens one).
* ``order_events``: every order state change after the intent's creation, append-only.
* ``funding``: funding payments on perpetual positions, one row per payment,
  ``UNIQUE(venue, payment_id)`` (the venue's id, else ``<symbol>@<funding time ms>``), so a
  payment fetched again (polls overlap, a backfill after downtime) is ignored; and
  ``fee_conversions``: the price a fee paid in a third currency (BNB) was valued at, by the
  fill's venue and trade id, so the hedging cost is rebuilt as it was counted. Both are schema 4
  (:data:`CREATE_COST_TABLES`), written off the reaction path in transactions of their own
  (:mod:`hedgerd.ledger.costs`).
* ``adjustments``: manual position corrections (e.g. a venue position adopted at startup).
* ``positions``, ``venue_totals``, ``order_fills``, ``trade_totals``: a snapshot of the aggregates
  derived from the journal (``trade_totals``: per venue and symbol, the fill count, net base
  amount, net quote notional and quote fees that :mod:`hedgerd.risk` turns into hedged-book
  PnL), so opening costs O(assets) instead of O(fills). ``order_fills`` (read back on a cache
  miss) is written in the same transaction as the fills; the other three at most every
  ``snapshot_interval`` seconds, in a transaction with fills, together with the fill id they
  cover (``meta.snapshot_fill_id``), and always with an adjustment and on close — each costs
  as much as the fill insert itself. On open the fills after that id (at most
  ``snapshot_interval`` seconds of them after a crash) are added to the snapshot; then its fill
  counts (``venue_totals`` and ``trade_totals``) are checked against the journal and it is
  rebuilt from the journal if either differs (so a ledger written before ``trade_totals``
  existed gets it on its next open); :meth:`InventoryLedger.verify` recomputes everything from
  the journal.
"""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger(__name__)

SCHEMA_VERSION = 4

SYNCHRONOUS_LEVELS = {"NORMAL": 1, "FULL": 2}  # SQLite's PRAGMA synchronous values
#: Page size of a new ledger file (an existing file keeps its own). Every commit writes each page
#: it touches to the WAL in full, and the checkpoint writes it again: a hedge cycle touches about
#: fifteen pages (fills, intents, order events and their indexes), so 1 KiB pages write a third of
#: the bytes 4 KiB pages would, and commits stall less often behind the disk.
PAGE_SIZE = 1024
PAGE_CACHE_KIB = 4_000  # the writer connection's SQLite page cache (see JournalWriter's open)

_FILL_COLUMNS = ("venue, trade_id, symbol, side, amount, price, fee, fee_currency, ts, received_at, "
                 "client_order_id")
_FILL_ROW = "(?,?,?,?,?,?,?,?,?,?,?)"
_FILL_WIDTH = 11

_CREATE_INTENTS = """
CREATE TABLE IF NOT EXISTS intents (
    intent_id       INTEGER PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    underlying      TEXT NOT NULL,
    venue           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    created_at      REAL NOT NULL,
    reduce_only     INTEGER NOT NULL,
    order_type      TEXT NOT NULL,
    limit_price     TEXT,
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,
    filled          TEXT NOT NULL,
    is_open         INTEGER NOT NULL,
    decision_mid         TEXT,
    decision_half_spread TEXT
)
"""
#: The tables schema 4 adds, all here (other storage backends mirror them as they are).
#: ``funding``: ``amount`` is what the account received in ``currency`` (negative: paid), ``ts``
#: the funding time, ``price`` the venue's price of ``currency`` in quote currency then (NULL
#: when it gives none). ``fee_conversions``: the price of ``currency`` a fill's fee was valued at.
CREATE_COST_TABLES = """
CREATE TABLE IF NOT EXISTS funding (
    funding_id INTEGER PRIMARY KEY,
    venue      TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    amount     TEXT NOT NULL,
    currency   TEXT NOT NULL,
    ts         REAL NOT NULL,
    price      TEXT,
    UNIQUE (venue, payment_id)
);
CREATE TABLE IF NOT EXISTS fee_conversions (
    venue    TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    price    TEXT NOT NULL,
    PRIMARY KEY (venue, trade_id)
)
"""
_SCHEMA = _CREATE_INTENTS + ";" + CREATE_COST_TABLES + """;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    fill_id         INTEGER PRIMARY KEY,
    venue           TEXT NOT NULL,
    trade_id        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    price           TEXT NOT NULL,
    fee             TEXT NOT NULL,
    fee_currency    TEXT,
    ts              REAL NOT NULL,
    received_at     REAL NOT NULL,
    client_order_id TEXT,
    UNIQUE (venue, trade_id)
);
CREATE TABLE IF NOT EXISTS order_events (
    event_id        INTEGER PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    status          TEXT NOT NULL,
    filled          TEXT NOT NULL,
    average_price   TEXT,
    venue_order_id  TEXT,
    ts              REAL NOT NULL,
    detail          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS adjustments (
    adjustment_id INTEGER PRIMARY KEY,
    venue         TEXT NOT NULL,
    asset         TEXT NOT NULL,
    delta         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    ts            REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    venue  TEXT NOT NULL,
    asset  TEXT NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (venue, asset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS venue_totals (
    venue        TEXT PRIMARY KEY,
    fills        INTEGER NOT NULL,
    fees         TEXT NOT NULL,
    last_fill_ts REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS order_fills (
    client_order_id TEXT PRIMARY KEY,
    filled          TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trade_totals (
    venue    TEXT NOT NULL,
    symbol   TEXT NOT NULL,
    fills    INTEGER NOT NULL,
    amount   TEXT NOT NULL,
    notional TEXT NOT NULL,
    fees     TEXT NOT NULL,
    PRIMARY KEY (venue, symbol)
) WITHOUT ROWID;
"""

#: :data:`CREATE_COST_TABLES` in PostgreSQL's dialect (schema 4; see the differences below).
PG_CREATE_COST_TABLES = """
CREATE TABLE IF NOT EXISTS funding (
    funding_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    venue      TEXT NOT NULL,
    payment_id TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    amount     TEXT NOT NULL,
    currency   TEXT NOT NULL,
    ts         DOUBLE PRECISION NOT NULL,
    price      TEXT,
    UNIQUE (venue, payment_id)
);
CREATE TABLE IF NOT EXISTS fee_conversions (
    venue    TEXT NOT NULL,
    trade_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    price    TEXT NOT NULL,
    PRIMARY KEY (venue, trade_id)
)
"""

# PostgreSQL: the same tables, columns and version as _SCHEMA above; mirror every change of one in
# the other (and a migration on both sides). Differences: REAL is DOUBLE PRECISION (PostgreSQL's
# REAL is single precision), counters are BIGINT, generated ids are identity columns (a conflict or
# a rollback skips values, so fill ids have gaps: the writer takes them from the INSERT's
# RETURNING, see storage.PostgresStorage), and no WITHOUT ROWID.
PG_SCHEMA = PG_CREATE_COST_TABLES + """;
CREATE TABLE IF NOT EXISTS intents (
    intent_id       BIGINT PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    underlying      TEXT NOT NULL,
    venue           TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    created_at      DOUBLE PRECISION NOT NULL,
    reduce_only     INTEGER NOT NULL,
    order_type      TEXT NOT NULL,
    limit_price     TEXT,
    reason          TEXT NOT NULL,
    status          TEXT NOT NULL,
    filled          TEXT NOT NULL,
    is_open         INTEGER NOT NULL,
    decision_mid         TEXT,
    decision_half_spread TEXT
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    fill_id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    venue           TEXT NOT NULL,
    trade_id        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    amount          TEXT NOT NULL,
    price           TEXT NOT NULL,
    fee             TEXT NOT NULL,
    fee_currency    TEXT,
    ts              DOUBLE PRECISION NOT NULL,
    received_at     DOUBLE PRECISION NOT NULL,
    client_order_id TEXT,
    UNIQUE (venue, trade_id)
);
CREATE TABLE IF NOT EXISTS order_events (
    event_id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    status          TEXT NOT NULL,
    filled          TEXT NOT NULL,
    average_price   TEXT,
    venue_order_id  TEXT,
    ts              DOUBLE PRECISION NOT NULL,
    detail          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS adjustments (
    adjustment_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    venue         TEXT NOT NULL,
    asset         TEXT NOT NULL,
    delta         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    ts            DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    venue  TEXT NOT NULL,
    asset  TEXT NOT NULL,
    amount TEXT NOT NULL,
    PRIMARY KEY (venue, asset)
);
CREATE TABLE IF NOT EXISTS venue_totals (
    venue        TEXT PRIMARY KEY,
    fills        BIGINT NOT NULL,
    fees         TEXT NOT NULL,
    last_fill_ts DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS order_fills (
    client_order_id TEXT PRIMARY KEY,
    filled          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trade_totals (
    venue    TEXT NOT NULL,
    symbol   TEXT NOT NULL,
    fills    BIGINT NOT NULL,
    amount   TEXT NOT NULL,
    notional TEXT NOT NULL,
    fees     TEXT NOT NULL,
    PRIMARY KEY (venue, symbol)
);
"""
#: PostgreSQL migrations: from schema version N, the statements that bring it to version N + 1
#: (run in the opening transaction, which then records SCHEMA_VERSION). PostgreSQL ledgers start
#: at version 3; SQLite's migrations are the functions below.
PG_MIGRATIONS: dict[int, list[str]] = {
    3: [s for s in PG_CREATE_COST_TABLES.split(";") if s.strip()],  # funding, fee_conversions
}

_SET_META = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_UPSERT_POSITION = ("INSERT INTO positions (venue, asset, amount) VALUES (?, ?, ?) "
                    "ON CONFLICT (venue, asset) DO UPDATE SET amount = excluded.amount")
_UPSERT_VENUE = ("INSERT INTO venue_totals (venue, fills, fees, last_fill_ts) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (venue) DO UPDATE SET fills = excluded.fills, fees = excluded.fees, "
                 "last_fill_ts = excluded.last_fill_ts")
_UPSERT_TRADES = ("INSERT INTO trade_totals (venue, symbol, fills, amount, notional, fees) VALUES (?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (venue, symbol) DO UPDATE SET fills = excluded.fills, amount = excluded.amount, "
                  "notional = excluded.notional, fees = excluded.fees")
_UPSERT_ORDER_FILL = ("INSERT INTO order_fills (client_order_id, filled) VALUES (?, ?) "
                      "ON CONFLICT (client_order_id) DO UPDATE SET filled = excluded.filled")
_INSERT_EVENT = ("INSERT INTO order_events (client_order_id, status, filled, average_price, venue_order_id, "
                 "ts, detail) VALUES (?, ?, ?, ?, ?, ?, ?)")
_INTENT_FIELDS = ("intent_id", "client_order_id", "underlying", "venue", "symbol", "side", "amount", "created_at",
                  "reduce_only", "order_type", "limit_price", "reason", "decision_mid", "decision_half_spread")
_INTENT_COLUMNS = ", ".join(_INTENT_FIELDS)
_V2_INTENT_COLUMNS = ("intent_id, client_order_id, underlying, venue, symbol, side, amount, created_at, reduce_only, "
                      "order_type, limit_price, reason, status, filled, is_open")


def _migrate_from_v1(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2, inside the opening transaction.

    Version 2 drops what each commit on the reaction path paid for in pages written: the
    UNIQUE index on ``intents.client_order_id`` (a client id is derived from the intent id,
    so the rowid finds it), the partial index of open intents (open intents are read from
    ``meta.open_intents_from`` on), the ``order_events`` index by client id (the intent row
    carries the last state) and AUTOINCREMENT (its counter is kept in ``meta.intent_id_seq``).
    The intents table is created at the current version (version 3's decision quote columns
    stay NULL for the old rows)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'intents'").fetchone()
    conn.execute("ALTER TABLE intents RENAME TO intents_v1")
    conn.execute(_CREATE_INTENTS)
    conn.execute(f"INSERT INTO intents ({_V2_INTENT_COLUMNS}) SELECT {_V2_INTENT_COLUMNS} FROM intents_v1")
    conn.execute("DROP TABLE intents_v1")  # with its indexes and its sqlite_sequence row
    conn.execute("DROP INDEX IF EXISTS order_events_by_client_id")
    last_id = int(conn.execute("SELECT coalesce(max(intent_id), 0) FROM intents").fetchone()[0])
    seq = max(last_id, 0 if row is None else int(row[0]))
    first_open = conn.execute("SELECT min(intent_id) FROM intents WHERE is_open = 1").fetchone()[0]
    conn.executemany(_SET_META, [("schema_version", str(SCHEMA_VERSION)), ("intent_id_seq", str(seq)),
                                 ("open_intents_from", str(seq + 1 if first_open is None else first_open))])
    log.warning("ledger schema migrated from version 1 to %d", SCHEMA_VERSION)


def _migrate_from_v2(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3, inside the opening transaction: each intent row keeps the hedge venue's
    quote when it was decided (mid and half spread), so a fill's slippage and spread can be
    measured after a restart too. Rows from before stay NULL (their fills count as unmeasured)."""
    conn.execute("ALTER TABLE intents ADD COLUMN decision_mid TEXT")
    conn.execute("ALTER TABLE intents ADD COLUMN decision_half_spread TEXT")
    conn.execute(_SET_META, ("schema_version", str(SCHEMA_VERSION)))
    log.warning("ledger schema migrated from version 2 to %d", SCHEMA_VERSION)


def _migrate_from_v3(conn: sqlite3.Connection) -> None:
    """Schema 3 -> 4, inside the opening transaction: the ``funding`` and ``fee_conversions``
    tables (created with the schema's ``IF NOT EXISTS`` statements before this runs) are all it
    adds."""
    for statement in CREATE_COST_TABLES.split(";"):
        conn.execute(statement)
    conn.execute(_SET_META, ("schema_version", str(SCHEMA_VERSION)))
    log.warning("ledger schema migrated from version 3 to %d", SCHEMA_VERSION)
